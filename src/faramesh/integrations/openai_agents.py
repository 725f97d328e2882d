"""Govern OpenAI Agents SDK function tools (`pip install "faramesh[openai-agents]"`).

    from agents import Agent, function_tool
    from faramesh.integrations.openai_agents import govern_function_tool

    @function_tool
    def refund(amount: float, customer_id: str) -> str: ...

    agent = Agent(name="billing", tools=[govern_function_tool(refund, operation="process")])

The governed tool keeps the name, description and JSON schema. Each call is submitted
with the model's arguments as `params`; the tool runs only when allowed or approved
(with the approved arguments) and its output or exception is reported. A denial or an
approval timeout is returned to the model as the tool's output, so the run goes on. An
unreachable or restarting server is retried until `timeout`, then refused the same way:
nothing runs.

The tool's own `timeout_seconds` (the Agents SDK cancels the call) and Faramesh's
`timeout` both end a wait for a person; `on_abandon="keep"` (default) leaves the held
action for the same call made again, "cancel" withdraws it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

from agents import FunctionTool
from agents.tool_context import ToolContext

from faramesh import jsonstrict
from faramesh.sdk.errors import ActionDenied, ApprovalTimeout
from faramesh.sdk.govern import DEFAULT_ON_ABANDON, DEFAULT_TIMEOUT, AnyClient, Gate, OnAbandon

__all__ = ["govern_function_tool", "govern_function_tools"]


def _refusal(message: str) -> str:
    return f"Not permitted by Faramesh: {message}. The tool was not run."


def govern_function_tool(
    tool: FunctionTool,
    *,
    tool_name: str | None = None,
    operation: str = "invoke",
    client: AnyClient | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    context: Mapping[str, Any] | None = None,
    agent_id: str | None = None,
    on_abandon: OnAbandon = DEFAULT_ON_ABANDON,
) -> FunctionTool:
    """A copy of `tool` whose every call is governed by Faramesh.

    tool_name: the Faramesh tool name (default: the function tool's name).
    client: an ExecutionGovernorClient or AsyncExecutionGovernorClient (default: from
    FARAMESH_URL / FARAMESH_API_KEY). timeout: seconds to wait for a person (None: no limit).
    on_abandon: "keep" (default) or "cancel" a held action when the wait ends undecided,
    also when the tool's own `timeout_seconds` cancels the call.
    """
    if not isinstance(tool, FunctionTool):
        raise TypeError(f"govern_function_tool takes a FunctionTool, not {type(tool).__name__}")
    gate = Gate(
        tool_name or tool.name,
        operation,
        client=client,
        timeout=timeout,
        context=context,
        agent_id=agent_id,
        on_abandon=on_abandon,
    )
    invoke = tool.on_invoke_tool

    async def governed(ctx: ToolContext[Any], arguments: str) -> Any:
        try:
            # strict: the text the tool runs with must be the values the policy judged
            params = jsonstrict.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            return _refusal(f"the arguments are not valid JSON ({exc})")
        if not isinstance(params, dict):
            return _refusal("the arguments are not a JSON object")

        async def call(decided: dict[str, Any], edited: bool) -> Any:
            return await invoke(ctx, json.dumps(decided) if edited else arguments)

        try:
            return await gate.arun(params, call)
        except (ActionDenied, ApprovalTimeout) as exc:
            return _refusal(str(exc))

    wrapped = copy.copy(tool)
    wrapped.on_invoke_tool = governed
    return wrapped


def govern_function_tools(tools: Iterable[FunctionTool], **options: Any) -> list[FunctionTool]:
    """`govern_function_tool` for each tool, with the same options."""
    return [govern_function_tool(t, **options) for t in tools]

"""Govern LangChain tools (`pip install "faramesh[langchain]"`).

    from faramesh.integrations.langchain import govern_tool
    safe_refund = govern_tool(refund_tool, operation="process")

The governed tool has the wrapped tool's name, description and argument schema, so a
model sees no difference. Each call is submitted to Faramesh with the tool's arguments
as `params`; it runs only when allowed or approved (with the approved arguments) and
its output or exception is reported. A denial or an approval timeout comes back to the
agent as the tool's error message (a ToolMessage with status "error"), so the run goes
on and the model can explain or choose another way. An unreachable or restarting
server is retried until `timeout`, then refused the same way (ServerUnavailable is an
ApprovalTimeout): nothing runs.

When the wait ends without a decision (`timeout`, or an async run cancelled by a timeout
around it), `on_abandon="keep"` (default) leaves the action held, so the model calling the
tool again with the same arguments picks up the decision; "cancel" withdraws it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.tools import BaseTool, ToolException
from pydantic import ConfigDict, SkipValidation
from pydantic_core import to_jsonable_python

from faramesh.sdk.errors import ActionDenied, ApprovalTimeout
from faramesh.sdk.govern import DEFAULT_ON_ABANDON, DEFAULT_TIMEOUT, AnyClient, Gate, OnAbandon

__all__ = ["GovernedTool", "NotPermitted", "govern_tool", "govern_tools"]

# Key under which a single-string tool input is submitted as params.
STRING_INPUT = "input"


class NotPermitted(ToolException):
    """Faramesh did not allow this call (denied, or no decision in time); the tool did not run."""


def _refusal(exc: ActionDenied | ApprovalTimeout) -> NotPermitted:
    return NotPermitted(f"Not permitted by Faramesh: {exc}. The tool was not run.")


class GovernedTool(BaseTool):
    """A LangChain tool that asks Faramesh before every call of the tool it wraps."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: SkipValidation[BaseTool]
    gate: SkipValidation[Gate]

    @property
    def tool_call_schema(self) -> Any:
        return self.inner.tool_call_schema

    @property
    def args(self) -> dict[str, Any]:
        return self.inner.args

    def _params(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Params for Faramesh, and whether the tool takes a single string."""
        if args:
            return {STRING_INPUT: to_jsonable_python(args[0])}, True
        return to_jsonable_python(dict(kwargs)), False

    def _run(self, *args: Any, run_manager: CallbackManagerForToolRun | None = None, **kwargs: Any) -> Any:
        params, single = self._params(args, kwargs)
        config: Any = {"callbacks": run_manager.get_child()} if run_manager else None

        def call(decided: dict[str, Any], edited: bool) -> Any:
            return self.inner.invoke(decided[STRING_INPUT] if single else decided, config=config)

        try:
            return self.gate.run(params, call)
        except (ActionDenied, ApprovalTimeout) as exc:
            raise _refusal(exc) from exc

    async def _arun(self, *args: Any, run_manager: AsyncCallbackManagerForToolRun | None = None, **kwargs: Any) -> Any:
        params, single = self._params(args, kwargs)
        config: Any = {"callbacks": run_manager.get_child()} if run_manager else None

        async def call(decided: dict[str, Any], edited: bool) -> Any:
            return await self.inner.ainvoke(decided[STRING_INPUT] if single else decided, config=config)

        try:
            return await self.gate.arun(params, call)
        except (ActionDenied, ApprovalTimeout) as exc:
            raise _refusal(exc) from exc


def _error_handler(inner: BaseTool) -> Callable[[ToolException], Any]:
    """Refusals become the tool's error message; the wrapped tool's own errors keep its setting."""
    flag = inner.handle_tool_error

    def handle(exc: ToolException) -> Any:
        if isinstance(exc, NotPermitted):
            return str(exc)
        if not flag:
            raise exc
        if isinstance(flag, str):
            return flag
        if callable(flag):
            return flag(exc)
        return exc.args[0] if exc.args else "Tool execution error"

    return handle


def govern_tool(
    tool: BaseTool,
    *,
    tool_name: str | None = None,
    operation: str = "invoke",
    client: AnyClient | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    context: Mapping[str, Any] | None = None,
    agent_id: str | None = None,
    on_abandon: OnAbandon = DEFAULT_ON_ABANDON,
) -> GovernedTool:
    """Wrap `tool` so that every call is governed by Faramesh.

    tool_name: the Faramesh tool name (default: the LangChain tool's name).
    client: an ExecutionGovernorClient or AsyncExecutionGovernorClient (default: from
    FARAMESH_URL / FARAMESH_API_KEY). timeout: seconds to wait for a person (None: no limit).
    on_abandon: "keep" (default) or "cancel" a held action when the wait ends undecided.
    """
    gate = Gate(
        tool_name or tool.name,
        operation,
        client=client,
        timeout=timeout,
        context=context,
        agent_id=agent_id,
        on_abandon=on_abandon,
    )
    return GovernedTool(
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        return_direct=tool.return_direct,
        tags=tool.tags,
        metadata=tool.metadata,
        handle_tool_error=_error_handler(tool),
        handle_validation_error=tool.handle_validation_error,
        inner=tool,
        gate=gate,
    )


def govern_tools(tools: Iterable[BaseTool], **options: Any) -> list[GovernedTool]:
    """`govern_tool` for each tool, with the same options."""
    return [govern_tool(t, **options) for t in tools]

"""OpenAI Agents SDK: a real Runner with a scripted model (no network) and governed tools."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("agents")

from agents import Agent, FunctionTool, Model, ModelResponse, Runner, Usage, function_tool, set_tracing_disabled
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

from faramesh.integrations.openai_agents import govern_function_tool, govern_function_tools
from faramesh.sdk.client import AsyncExecutionGovernorClient, ExecutionGovernorClient
from tests.conftest import ServerProcess
from tests.integrations.conftest import Approver

set_tracing_disabled(True)


class ScriptedModel(Model):
    """Implements the SDK's Model interface: first the scripted tool calls, then a final answer.

    It keeps every input it was given, so a test can read the tool outputs the model saw.
    """

    def __init__(self, calls: list[tuple[str, dict[str, Any]]], answer: str = "done") -> None:
        self.calls = calls
        self.answer = answer
        self.turn = 0
        self.inputs: list[Any] = []

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> ModelResponse:
        self.inputs.append(input)
        self.turn += 1
        if self.turn == 1:
            output: list[Any] = [
                ResponseFunctionToolCall(
                    type="function_call",
                    call_id=f"call_{i}",
                    id=f"fc_{i}",
                    name=name,
                    arguments=json.dumps(args_),
                )
                for i, (name, args_) in enumerate(self.calls)
            ]
        else:
            output = [
                ResponseOutputMessage(
                    id="msg_1",
                    type="message",
                    role="assistant",
                    status="completed",
                    content=[ResponseOutputText(type="output_text", text=self.answer, annotations=[])],
                )
            ]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the tests do not stream")

    def tool_outputs(self) -> dict[str, str]:
        """call_id -> the output the model was shown."""
        out: dict[str, str] = {}
        for given in self.inputs:
            if isinstance(given, list):
                for item in given:
                    if isinstance(item, dict) and item.get("type") == "function_call_output":
                        out[item["call_id"]] = str(item["output"])
        return out


class Bank:
    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []

        @function_tool
        def lookup_order(order_id: str) -> str:
            """Look up an order by id."""
            self.ran.append(("lookup_order", {"order_id": order_id}))
            return f"order {order_id}: shipped"

        @function_tool
        def transfer_funds(amount: float, to_account: str) -> str:
            """Transfer money to an account."""
            self.ran.append(("transfer_funds", {"amount": amount, "to_account": to_account}))
            return f"sent {amount} to {to_account}"

        @function_tool
        def wipe_database(confirm: bool) -> str:
            """Delete every row."""
            self.ran.append(("wipe_database", {"confirm": confirm}))
            return "wiped"

        self.tools: list[FunctionTool] = [lookup_order, transfer_funds, wipe_database]


@pytest.fixture
def bot() -> str:
    return f"oa-{uuid.uuid4().hex[:8]}"


def actions_of(gov_server: ServerProcess, agent_key: str, bot: str) -> dict[str, dict[str, Any]]:
    with ExecutionGovernorClient(gov_server.url, agent_key) as client:
        return {a["tool"]: client.get_action(a["id"]) for a in client.list_actions(agent_id=bot)["actions"]}


def test_wrapper_keeps_name_description_and_schema(gov_server: ServerProcess, agent_key: str) -> None:
    for original in Bank().tools:
        governed = govern_function_tool(original, client=ExecutionGovernorClient(gov_server.url, agent_key))
        assert governed is not original
        assert (governed.name, governed.description) == (original.name, original.description)
        assert governed.params_json_schema == original.params_json_schema
        assert governed.on_invoke_tool is not original.on_invoke_tool


def test_agent_run_denied_tool_never_runs_and_allowed_one_is_reported(
    gov_server: ServerProcess, agent_key: str, bot: str
) -> None:
    bank = Bank()
    model = ScriptedModel([("wipe_database", {"confirm": True}), ("lookup_order", {"order_id": "C3"})])

    async def scenario() -> Any:
        async with AsyncExecutionGovernorClient(gov_server.url, agent_key) as client:
            agent = Agent(name="ops", model=model, tools=govern_function_tools(bank.tools, client=client, agent_id=bot))
            return await Runner.run(agent, "wipe the database and check order C3")

    result = asyncio.run(scenario())
    assert result.final_output == "done"
    assert bank.ran == [("lookup_order", {"order_id": "C3"})]
    shown = model.tool_outputs()
    assert "Not permitted by Faramesh" in shown["call_0"] and "Never wipe the database" in shown["call_0"]
    assert shown["call_1"] == "order C3: shipped"
    recorded = actions_of(gov_server, agent_key, bot)
    assert recorded["wipe_database"]["status"] == "denied"
    assert recorded["lookup_order"]["status"] == "succeeded"
    assert recorded["lookup_order"]["params"] == {"order_id": "C3"}
    assert recorded["lookup_order"]["result"] == "order C3: shipped"


def test_agent_run_pending_tool_runs_only_after_approval(
    gov_server: ServerProcess, agent_key: str, approver: Approver, bot: str
) -> None:
    bank = Bank()
    model = ScriptedModel([("transfer_funds", {"amount": 120.0, "to_account": "NL02"})])
    seen: list[int] = []
    approver.decide_next("transfer_funds", agent_id=bot, before=lambda a: seen.append(len(bank.ran)))
    client = ExecutionGovernorClient(gov_server.url, agent_key)  # a sync client works from async code too
    agent = Agent(
        name="ops",
        model=model,
        tools=[govern_function_tool(bank.tools[1], client=client, agent_id=bot, operation="send", timeout=30)],
    )
    result = Runner.run_sync(agent, "send 120 to NL02")
    approver.join()
    assert result.final_output == "done"
    assert seen == [0]
    assert bank.ran == [("transfer_funds", {"amount": 120.0, "to_account": "NL02"})]
    action = actions_of(gov_server, agent_key, bot)["transfer_funds"]
    assert (action["operation"], action["status"]) == ("send", "succeeded")
    assert action["result"] == "sent 120.0 to NL02"


def test_agent_run_pending_tool_denied_by_a_person(
    gov_server: ServerProcess, agent_key: str, approver: Approver, bot: str
) -> None:
    bank = Bank()
    model = ScriptedModel([("transfer_funds", {"amount": 5000.0, "to_account": "XX"})])
    approver.decide_next("transfer_funds", agent_id=bot, approve=False, reason="unknown account")
    client = ExecutionGovernorClient(gov_server.url, agent_key)
    agent = Agent(
        name="ops", model=model, tools=[govern_function_tool(bank.tools[1], client=client, agent_id=bot, timeout=30)]
    )
    Runner.run_sync(agent, "send it")
    approver.join()
    assert bank.ran == []
    assert "unknown account" in model.tool_outputs()["call_0"]


def test_tool_exception_is_reported_as_failed(gov_server: ServerProcess, agent_key: str, bot: str) -> None:
    @function_tool(failure_error_function=None)
    def lookup_order(order_id: str) -> str:
        """Look up an order by id."""
        raise KeyError(order_id)

    model = ScriptedModel([("lookup_order", {"order_id": "Q"})])
    client = ExecutionGovernorClient(gov_server.url, agent_key)
    agent = Agent(name="ops", model=model, tools=[govern_function_tool(lookup_order, client=client, agent_id=bot)])
    with pytest.raises(Exception, match="Q"):
        Runner.run_sync(agent, "look up Q")
    action = actions_of(gov_server, agent_key, bot)["lookup_order"]
    assert action["status"] == "failed" and "KeyError" in action["error"]


@pytest.mark.parametrize(
    "arguments",
    [
        '{"amount": 100.000000000000001, "to_account": "acct-1"}',
        '{"amount": 5, "amount": 5000, "to_account": "acct-1"}',
        '{"amount": 18446744073709551616, "to_account": "acct-1"}',
    ],
)
def test_arguments_the_policy_would_read_differently_are_refused_before_submitting(
    gov_server: ServerProcess, agent_key: str, bot: str, arguments: str
) -> None:
    # The tool runs with the model's text, so the policy must judge exactly that text:
    # a number a double rounds, or a repeated key, is refused rather than judged as something else.
    bank = Bank()
    client = ExecutionGovernorClient(gov_server.url, agent_key)
    governed = govern_function_tool(bank.tools[1], client=client, agent_id=bot)
    output = asyncio.run(governed.on_invoke_tool(None, arguments))  # type: ignore[arg-type]
    assert "not valid JSON" in str(output), output
    assert bank.ran == []
    assert actions_of(gov_server, agent_key, bot) == {}

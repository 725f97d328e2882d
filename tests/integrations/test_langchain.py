"""LangChain tools governed by a real server, run by LangChain's own tool machinery."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, Tool, tool

from faramesh.integrations.langchain import govern_tool, govern_tools
from faramesh.sdk.client import AsyncExecutionGovernorClient, ExecutionGovernorClient
from tests.conftest import ServerProcess
from tests.integrations.conftest import Approver


@pytest.fixture
def bot() -> str:
    return f"lc-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(gov_server: ServerProcess, agent_key: str) -> ExecutionGovernorClient:
    return ExecutionGovernorClient(gov_server.url, agent_key)


class Ledger:
    """Real tools whose bodies record that they ran."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []

        @tool
        def lookup_order(order_id: str) -> str:
            """Look up an order by id."""
            self.ran.append(("lookup_order", {"order_id": order_id}))
            return f"order {order_id}: shipped"

        @tool
        def transfer_funds(amount: float, to_account: str) -> dict[str, Any]:
            """Transfer money to an account."""
            self.ran.append(("transfer_funds", {"amount": amount, "to_account": to_account}))
            return {"transferred": amount, "to": to_account}

        @tool
        def wipe_database(confirm: bool) -> str:
            """Delete every row in the database."""
            self.ran.append(("wipe_database", {"confirm": confirm}))
            return "wiped"

        self.tools: list[BaseTool] = [lookup_order, transfer_funds, wipe_database]


def call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "args": args, "id": f"call_{uuid.uuid4().hex[:6]}", "type": "tool_call"}


def newest(client: ExecutionGovernorClient, bot: str) -> dict[str, Any]:
    return client.get_action(client.list_actions(agent_id=bot, limit=1)["actions"][0]["id"])


def test_governed_tool_looks_the_same_to_the_model(client: ExecutionGovernorClient) -> None:
    for original in Ledger().tools:
        governed = govern_tool(original, client=client)
        assert governed.name == original.name
        assert governed.description == original.description
        assert governed.args == original.args
        assert governed.tool_call_schema.model_json_schema() == original.tool_call_schema.model_json_schema()


def test_denied_call_returns_a_tool_error_and_never_runs(client: ExecutionGovernorClient, bot: str) -> None:
    ledger = Ledger()
    wipe = govern_tool(ledger.tools[2], client=client, agent_id=bot)
    message = wipe.invoke(call("wipe_database", {"confirm": True}))
    assert isinstance(message, ToolMessage)
    assert message.status == "error"
    assert "Not permitted by Faramesh" in message.content and "Never wipe the database" in message.content
    assert ledger.ran == []
    assert newest(client, bot)["status"] == "denied"


def test_allowed_call_runs_and_its_output_is_reported(client: ExecutionGovernorClient, bot: str) -> None:
    ledger = Ledger()
    lookup = govern_tool(ledger.tools[0], client=client, agent_id=bot)
    message = lookup.invoke(call("lookup_order", {"order_id": "A7"}))
    assert message.status == "success" and message.content == "order A7: shipped"
    assert ledger.ran == [("lookup_order", {"order_id": "A7"})]
    action = newest(client, bot)
    assert (action["tool"], action["operation"], action["params"]) == ("lookup_order", "invoke", {"order_id": "A7"})
    assert action["status"] == "succeeded" and action["result"] == "order A7: shipped"


def test_pending_call_runs_only_after_approval(client: ExecutionGovernorClient, approver: Approver, bot: str) -> None:
    ledger = Ledger()
    transfer = govern_tool(ledger.tools[1], client=client, agent_id=bot, operation="send", timeout=30)
    seen: list[int] = []
    approver.decide_next("transfer_funds", agent_id=bot, before=lambda a: seen.append(len(ledger.ran)))
    message = transfer.invoke(call("transfer_funds", {"amount": 75.5, "to_account": "DE01"}))
    approver.join()
    assert seen == [0]
    assert ledger.ran == [("transfer_funds", {"amount": 75.5, "to_account": "DE01"})]
    assert message.status == "success"
    action = newest(client, bot)
    assert action["status"] == "succeeded" and action["result"] == {"transferred": 75.5, "to": "DE01"}


def test_timeout_comes_back_as_a_tool_error(client: ExecutionGovernorClient, bot: str) -> None:
    ledger = Ledger()
    transfer = govern_tool(ledger.tools[1], client=client, agent_id=bot, timeout=0.5)
    message = transfer.invoke(call("transfer_funds", {"amount": 1, "to_account": "X"}))
    assert message.status == "error" and "no decision within" in message.content
    assert ledger.ran == []


def test_tool_failure_is_reported(client: ExecutionGovernorClient, bot: str) -> None:
    @tool
    def lookup_order(order_id: str) -> str:
        """Look up an order by id."""
        raise LookupError(f"no order {order_id}")

    governed = govern_tool(lookup_order, client=client, agent_id=bot)
    with pytest.raises(LookupError):
        governed.invoke({"order_id": "Z"})
    action = newest(client, bot)
    assert action["status"] == "failed" and action["error"] == "LookupError: no order Z"


def test_single_string_tool(client: ExecutionGovernorClient, bot: str) -> None:
    seen: list[str] = []
    plain = Tool(name="lookup_order", description="Look up an order.", func=lambda q: seen.append(q) or "found")
    governed = govern_tool(plain, client=client, agent_id=bot)
    assert governed.invoke("A1") == "found"
    assert seen == ["A1"]
    assert newest(client, bot)["params"] == {"input": "A1"}


def test_agent_loop_with_a_fake_chat_model(client: ExecutionGovernorClient, bot: str) -> None:
    """A tool-calling loop with LangChain's own fake chat model: the denial reaches the model
    as a tool error, the run goes on, the allowed tool runs."""
    ledger = Ledger()
    tools = {t.name: t for t in govern_tools(ledger.tools, client=client, agent_id=bot)}
    model = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[call("wipe_database", {"confirm": True}), call("lookup_order", {"order_id": "B2"})],
                ),
                AIMessage(content="I could not wipe the database; order B2 has shipped."),
            ]
        )
    )
    messages: list[BaseMessage] = [HumanMessage("Wipe the db and check order B2")]
    while True:
        reply = model.invoke(messages)
        messages.append(reply)
        assert isinstance(reply, AIMessage)
        if not reply.tool_calls:
            break
        for tc in reply.tool_calls:
            messages.append(tools[tc["name"]].invoke(tc))
    tool_messages = [m for m in messages if isinstance(m, ToolMessage)]
    assert [m.status for m in tool_messages] == ["error", "success"]
    assert "Never wipe the database" in tool_messages[0].content
    assert tool_messages[1].content == "order B2: shipped"
    assert ledger.ran == [("lookup_order", {"order_id": "B2"})]
    assert messages[-1].content.startswith("I could not wipe")


def test_async_invocation(gov_server: ServerProcess, agent_key: str, approver: Approver, bot: str) -> None:
    ledger = Ledger()
    seen: list[int] = []

    async def scenario() -> list[ToolMessage]:
        async with AsyncExecutionGovernorClient(gov_server.url, agent_key) as aclient:
            _lookup, transfer, wipe = govern_tools(ledger.tools, client=aclient, agent_id=bot, timeout=30)
            approver.decide_next("transfer_funds", agent_id=bot, before=lambda a: seen.append(len(ledger.ran)))
            return [
                await wipe.ainvoke(call("wipe_database", {"confirm": True})),
                await transfer.ainvoke(call("transfer_funds", {"amount": 9, "to_account": "Q"})),
            ]

    denied, approved = asyncio.run(scenario())
    approver.join()
    assert denied.status == "error" and approved.status == "success"
    assert seen == [0]
    assert ledger.ran == [("transfer_funds", {"amount": 9, "to_account": "Q"})]

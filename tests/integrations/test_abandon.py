"""When the agent stops waiting for a held action: `govern`, LangChain, the OpenAI Agents
SDK and the MCP gateway keep it for the same call made again (`on_abandon="keep"`, the
default) or cancel it (`"cancel"`), never leave it unsaid, and never run the code for
the call that gave up. A later identical call re-attaches and runs once with the approval.

Against a real server process on SQLite and on PostgreSQL; the lapse of an approval
nobody picks up uses the in-process app with its fake clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp")
pytest.importorskip("agents")
pytest.importorskip("langchain_core")

from agents import Agent, Runner, function_tool
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent

from faramesh import ApprovalTimeout, AsyncExecutionGovernorClient, ExecutionGovernorClient, govern
from faramesh.integrations.langchain import govern_tool
from faramesh.integrations.openai_agents import govern_function_tool
from faramesh.sdk.errors import ConflictError
from faramesh.sdk.govern import Gate
from tests.conftest import ServerProcess, fresh_database
from tests.inprocess import FakeClock, InProcessServer, poll
from tests.integrations.conftest import POLICY
from tests.integrations.test_openai_agents import ScriptedModel

pytestmark = pytest.mark.backends("sqlite", "postgresql")

DEMO = Path(__file__).parent / "mcp_demo_server.py"
MODES = ("keep", "cancel")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("abandon")
    with fresh_database(backend, tmp) as url:
        server = ServerProcess(url, POLICY, cwd=tmp).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def agent_key(srv: ServerProcess) -> str:
    return srv.create_key("agent")


@pytest.fixture
def person(srv: ServerProcess) -> Iterator[ExecutionGovernorClient]:
    with ExecutionGovernorClient(srv.url, srv.create_key("approver")) as client:
        yield client


@pytest.fixture
def bot() -> str:
    return f"ab-{uuid.uuid4().hex[:8]}"


def actions_of(person: ExecutionGovernorClient, bot: str) -> list[dict[str, Any]]:
    return [person.get_action(a["id"]) for a in person.list_actions(agent_id=bot)["actions"]]


def events_of(person: ExecutionGovernorClient, action_id: str) -> list[str]:
    return [e["event"] for e in person.get_action_events(action_id)]


def waited_on(person: ExecutionGovernorClient, bot: str) -> dict[str, Any]:
    """The bot's held action once its agent has a wait open on it (so the submit's answer
    has arrived and the caller knows the action's id)."""

    def check() -> dict[str, Any] | None:
        for listed in person.list_actions(status="pending_approval", agent_id=bot)["actions"]:
            action = person.get_action(listed["id"])
            if action["presence"]["agent_waiting"]:
                return action
        return None

    found: dict[str, Any] = poll(check, timeout=30)
    return found


def status_becomes(person: ExecutionGovernorClient, action_id: str, status: str) -> None:
    poll(lambda: person.get_action(action_id)["status"] == status, timeout=30)


def check_abandoned(person: ExecutionGovernorClient, action_id: str, mode: str) -> None:
    """A kept action stays held and can still be approved; a cancelled one refuses approval."""
    if mode == "keep":
        assert person.get_action(action_id)["status"] == "pending_approval"
        return
    status_becomes(person, action_id, "cancelled")
    action = person.get_action(action_id)
    assert action["decision_reason"].startswith("The agent stopped waiting"), action["decision_reason"]
    assert "action.cancelled" in events_of(person, action_id)
    with pytest.raises(ConflictError):
        person.approve_action(action_id, "too late")


# -- the option ----------------------------------------------------------------------------
def test_on_abandon_is_keep_or_cancel() -> None:
    assert Gate("refund", "process").on_abandon == "keep"
    with pytest.raises(ValueError, match="on_abandon must be 'keep' or 'cancel'"):
        govern(tool="refund", on_abandon="drop")(lambda amount: amount)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_abandon"):
        Gate("refund", "process", on_abandon="forget")  # type: ignore[arg-type]


# -- govern: its own deadline ------------------------------------------------------------------
def test_timeout_keeps_the_action_and_the_same_call_again_runs_it_once_as_approved(
    srv: ServerProcess, agent_key: str, person: ExecutionGovernorClient, bot: str
) -> None:
    calls: list[tuple[float, str]] = []

    @govern(
        tool="refund",
        operation="process",
        agent_id=bot,
        timeout=0.5,
        client=ExecutionGovernorClient(srv.url, agent_key),
    )
    def refund(amount: float, customer_id: str) -> str:
        calls.append((amount, customer_id))
        return f"refunded {amount}"

    with pytest.raises(ApprovalTimeout) as gave_up:
        refund(500, "cus_1")
    assert "stays held" in str(gave_up.value) and "the same call made again" in str(gave_up.value)
    action_id = gave_up.value.action_id
    assert action_id and calls == []
    check_abandoned(person, action_id, "keep")

    # A person approves a smaller refund after the agent gave up; the retry picks it up.
    person.approve_action(action_id, "partial", params={"amount": 450, "customer_id": "cus_1"})
    assert refund(500, "cus_1") == "refunded 450"
    assert calls == [(450, "cus_1")]
    assert refund.gate.timeout == 0.5  # type: ignore[attr-defined]
    [only] = actions_of(person, bot)
    assert only["id"] == action_id and only["status"] == "succeeded"
    assert "action.reattached" in events_of(person, action_id)


def test_timeout_with_cancel_withdraws_the_action(
    srv: ServerProcess, agent_key: str, person: ExecutionGovernorClient, bot: str
) -> None:
    calls: list[float] = []
    client = ExecutionGovernorClient(srv.url, agent_key)

    @govern(tool="refund", operation="process", agent_id=bot, timeout=0.5, client=client, on_abandon="cancel")
    def refund(amount: float) -> None:
        calls.append(amount)

    with pytest.raises(ApprovalTimeout) as gave_up:
        refund(600)
    assert "It was cancelled (on_abandon='cancel')" in str(gave_up.value)
    assert gave_up.value.action is not None and gave_up.value.action["status"] == "cancelled"
    assert gave_up.value.action_id
    check_abandoned(person, gave_up.value.action_id, "cancel")
    assert "no decision within 0.5s" in person.get_action(gave_up.value.action_id)["decision_reason"]
    assert calls == []


def test_context_manager_cancels_too(
    srv: ServerProcess, agent_key: str, person: ExecutionGovernorClient, bot: str
) -> None:
    ran: list[bool] = []
    client = ExecutionGovernorClient(srv.url, agent_key)
    with (
        pytest.raises(ApprovalTimeout) as gave_up,
        client.govern("refund", "process", {"amount": 700}, timeout=0.5, agent_id=bot, on_abandon="cancel"),
    ):
        ran.append(True)
    assert ran == [] and gave_up.value.action_id
    check_abandoned(person, gave_up.value.action_id, "cancel")


# -- govern: async code cancelled by its caller (a framework's tool timeout) --------------------
@pytest.mark.parametrize("mode", MODES)
def test_async_call_cancelled_while_held(
    srv: ServerProcess, agent_key: str, person: ExecutionGovernorClient, bot: str, mode: str
) -> None:
    calls: list[float] = []

    async def scenario() -> str | None:
        async with AsyncExecutionGovernorClient(srv.url, agent_key) as client:

            @govern(tool="refund", operation="process", agent_id=bot, timeout=120, client=client, on_abandon=mode)  # type: ignore[arg-type]
            async def refund(amount: float) -> str:
                calls.append(amount)
                return f"refunded {amount}"

            task = asyncio.create_task(refund(800))
            held = await asyncio.to_thread(waited_on, person, bot)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            check_abandoned(person, held["id"], mode)
            if mode == "cancel":
                return None
            person.approve_action(held["id"], "ok")
            return await refund(800)  # the same call again re-attaches to the approved action

    outcome = asyncio.run(scenario())
    if mode == "keep":
        assert outcome == "refunded 800" and calls == [800]
        [only] = actions_of(person, bot)
        assert only["status"] == "succeeded"
    else:
        assert calls == []


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_while_held(
    srv: ServerProcess, agent_key: str, person: ExecutionGovernorClient, bot: str, mode: str, tmp_path: Path
) -> None:
    script = tmp_path / "agent.py"
    script.write_text(
        "import sys\n"
        "from faramesh import govern\n"
        "@govern(tool='refund', operation='process', agent_id=sys.argv[1], timeout=120, on_abandon=sys.argv[2])\n"
        "def refund(amount: float) -> str:\n"
        "    print('RAN', flush=True)\n"
        "    return 'ok'\n"
        "try:\n"
        "    refund(900)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(130)\n",
        encoding="utf-8",
    )
    env = {**os.environ, "FARAMESH_URL": srv.url, "FARAMESH_API_KEY": agent_key}
    proc = subprocess.Popen(
        [sys.executable, str(script), bot, mode], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        held = waited_on(person, bot)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert out.strip() == "interrupted"
    check_abandoned(person, held["id"], mode)
    if mode == "keep":
        assert "stays held" in err  # said on the faramesh.govern logger, not left unsaid


# -- the OpenAI Agents SDK's tool timeout ---------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_agents_sdk_tool_timeout(
    srv: ServerProcess, agent_key: str, person: ExecutionGovernorClient, bot: str, mode: str
) -> None:
    ran: list[dict[str, Any]] = []

    @function_tool(timeout=3)  # the Agents SDK times out async tools only
    async def transfer_funds(amount: float, to_account: str) -> str:
        """Transfer money to an account."""
        ran.append({"amount": amount, "to_account": to_account})
        return f"sent {amount} to {to_account}"

    call = ("transfer_funds", {"amount": 250.0, "to_account": "NL02"})

    async def run() -> ScriptedModel:
        model = ScriptedModel([call])
        async with AsyncExecutionGovernorClient(srv.url, agent_key) as client:
            governed = govern_function_tool(transfer_funds, client=client, agent_id=bot, on_abandon=mode)  # type: ignore[arg-type]
            await Runner.run(Agent(name="ops", model=model, tools=[governed]), "send 250 to NL02")
        return model

    first = asyncio.run(run())
    assert "timed out" in first.tool_outputs()["call_0"]
    [held] = actions_of(person, bot)
    check_abandoned(person, held["id"], mode)
    assert ran == []
    if mode == "cancel":
        return
    # The model calls the tool again; a person approved meanwhile: it runs once.
    person.approve_action(held["id"], "ok")
    second = asyncio.run(run())
    assert second.tool_outputs()["call_0"] == "sent 250.0 to NL02"
    assert ran == [{"amount": 250.0, "to_account": "NL02"}]
    [only] = actions_of(person, bot)
    assert only["id"] == held["id"] and only["status"] == "succeeded"


def test_agents_sdk_tool_timeout_with_a_sync_client(
    srv: ServerProcess, agent_key: str, person: ExecutionGovernorClient, bot: str
) -> None:
    # A sync client waits in a worker thread; the run still ends soon after the tool
    # timeout (the thread's slice ends), and the action is cancelled.
    @function_tool(timeout=3)  # the Agents SDK times out async tools only
    async def transfer_funds(amount: float, to_account: str) -> str:
        """Transfer money to an account."""
        raise AssertionError("never runs")

    client = ExecutionGovernorClient(srv.url, agent_key)
    governed = govern_function_tool(transfer_funds, client=client, agent_id=bot, on_abandon="cancel")
    model = ScriptedModel([("transfer_funds", {"amount": 260.0, "to_account": "NL03"})])
    Runner.run_sync(Agent(name="ops", model=model, tools=[governed]), "send 260 to NL03")
    assert "timed out" in model.tool_outputs()["call_0"]
    [held] = actions_of(person, bot)
    check_abandoned(person, held["id"], "cancel")


# -- LangChain ---------------------------------------------------------------------------------
def _ledger() -> tuple[Any, list[dict[str, Any]]]:
    ran: list[dict[str, Any]] = []

    @tool
    def transfer_funds(amount: float, to_account: str) -> str:
        """Transfer money to an account."""
        ran.append({"amount": amount, "to_account": to_account})
        return f"sent {amount} to {to_account}"

    return transfer_funds, ran


def _tool_call(args: dict[str, Any]) -> dict[str, Any]:
    return {"name": "transfer_funds", "args": args, "id": "call_1", "type": "tool_call"}


def test_langchain_timeout_with_cancel(
    srv: ServerProcess, agent_key: str, person: ExecutionGovernorClient, bot: str
) -> None:
    inner, ran = _ledger()
    governed = govern_tool(
        inner, client=ExecutionGovernorClient(srv.url, agent_key), agent_id=bot, timeout=0.5, on_abandon="cancel"
    )
    message = governed.invoke(_tool_call({"amount": 300.0, "to_account": "DE01"}))
    assert isinstance(message, ToolMessage) and message.status == "error"
    assert "It was cancelled" in str(message.content) and ran == []
    [held] = actions_of(person, bot)
    check_abandoned(person, held["id"], "cancel")


@pytest.mark.parametrize("mode", MODES)
def test_langchain_async_run_cancelled_while_held(
    srv: ServerProcess, agent_key: str, person: ExecutionGovernorClient, bot: str, mode: str
) -> None:
    inner, ran = _ledger()
    args = {"amount": 310.0, "to_account": "DE02"}

    async def scenario() -> Any:
        async with AsyncExecutionGovernorClient(srv.url, agent_key) as client:
            governed = govern_tool(inner, client=client, agent_id=bot, timeout=120, on_abandon=mode)  # type: ignore[arg-type]
            task = asyncio.create_task(governed.ainvoke(_tool_call(args)))
            held = await asyncio.to_thread(waited_on, person, bot)
            task.cancel()  # what asyncio.timeout() around an agent run does
            with pytest.raises(asyncio.CancelledError):
                await task
            check_abandoned(person, held["id"], mode)
            if mode == "cancel":
                return None
            person.approve_action(held["id"], "ok")
            return await governed.ainvoke(_tool_call(args))

    message = asyncio.run(scenario())
    if mode == "cancel":
        assert ran == []
        return
    assert isinstance(message, ToolMessage) and message.content == "sent 310.0 to DE02"
    assert ran == [args]
    [only] = actions_of(person, bot)
    assert only["status"] == "succeeded"


# -- the MCP gateway: the client gives up on a held call -----------------------------------------
def _gateway(srv: ServerProcess, key: str, bot: str, demo_log: Path, mode: str) -> StdioServerParameters:
    env = {**os.environ, "FARAMESH_URL": srv.url, "FARAMESH_API_KEY": key, "DEMO_LOG": str(demo_log)}
    args = ["-m", "faramesh.cli.main", "mcp", "proxy", "--name", "demo", "--agent-id", bot, "--timeout", "120"]
    args += ["--on-abandon", mode, "--", sys.executable, str(DEMO)]
    return StdioServerParameters(command=sys.executable, args=args, env=env)


def _text(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


EMAIL = {"to": "ops@example.com", "subject": "late"}


@pytest.mark.parametrize("mode", MODES)
def test_mcp_client_cancels_a_held_call(
    srv: ServerProcess, agent_key: str, person: ExecutionGovernorClient, bot: str, mode: str, tmp_path: Path
) -> None:
    demo_log = tmp_path / "demo.log"
    demo_log.touch()
    gateway_log = tmp_path / "gateway.log"

    async def scenario() -> CallToolResult | None:
        with gateway_log.open("w") as errlog:
            params = _gateway(srv, agent_key, bot, demo_log, mode)
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                async with anyio.create_task_group() as tg:
                    # The client gives up: cancelling its request sends notifications/cancelled.
                    tg.start_soon(session.call_tool, "send_email", EMAIL)
                    held = await anyio.to_thread.run_sync(waited_on, person, bot)
                    tg.cancel_scope.cancel()
                if mode == "cancel":
                    await anyio.to_thread.run_sync(check_abandoned, person, held["id"], mode)
                    return None
                # The gateway said what it did with the action, and it is still held.
                await anyio.to_thread.run_sync(
                    lambda: poll(lambda: "stays held" in gateway_log.read_text(), timeout=30)
                )
                check_abandoned(person, held["id"], mode)
                person.approve_action(held["id"], "ok")
                # The client calls the same tool again: the approval is picked up.
                return await session.call_tool("send_email", EMAIL)

    result = asyncio.run(scenario())
    reached = [json.loads(line) for line in demo_log.read_text().splitlines()]
    if mode == "cancel":
        assert reached == []
        return
    assert result is not None and not result.is_error and _text(result) == "sent 'late' to ops@example.com"
    assert reached == [{"tool": "send_email", "args": EMAIL}]
    [only] = actions_of(person, bot)
    assert only["status"] == "succeeded" and "action.reattached" in events_of(person, only["id"])


def test_mcp_request_timeout_cancels_the_action(
    srv: ServerProcess, agent_key: str, person: ExecutionGovernorClient, bot: str, tmp_path: Path
) -> None:
    demo_log = tmp_path / "demo.log"
    demo_log.touch()

    async def scenario() -> None:
        params = _gateway(srv, agent_key, bot, demo_log, "cancel")
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            with pytest.raises(MCPError, match="timed out"):
                await session.call_tool("send_email", EMAIL, read_timeout_seconds=3)

    asyncio.run(scenario())
    [held] = actions_of(person, bot)
    check_abandoned(person, held["id"], "cancel")
    assert demo_log.read_text() == ""


# -- a kept approval nobody picks up never runs later ---------------------------------------------
def test_kept_approval_that_nobody_picks_up_lapses(make_client: Callable[..., InProcessServer]) -> None:
    app = make_client(policy=POLICY, clock=FakeClock())
    agent = ExecutionGovernorClient(app.url, app.create_key("agent"), transport=app.transport)
    person = ExecutionGovernorClient(app.url, app.create_key("approver"), transport=app.transport)
    calls: list[float] = []

    @govern(tool="refund", operation="process", agent_id="lapse-bot", timeout=0.2, client=agent)
    def refund(amount: float) -> None:
        calls.append(amount)

    with pytest.raises(ApprovalTimeout) as gave_up:
        refund(500)
    action_id = gave_up.value.action_id
    assert action_id
    approved = person.approve_action(action_id, "ok")
    assert approved["approval"]["lapses_at"]
    app.advance(2 * 3600)  # past the default one-hour lapse: nobody called again
    lapsed = person.get_action(action_id)
    assert (lapsed["status"], lapsed["decided_by"]) == ("cancelled", "system:lapse")
    # The same call much later is a new request for a person, not the old approval.
    with pytest.raises(ApprovalTimeout) as again:
        refund(500)
    assert again.value.action_id != action_id
    assert calls == []


def test_an_agent_that_stopped_waiting_does_not_pick_up_its_approval(
    start_server: Callable[..., ServerProcess], bot: str
) -> None:
    # The cancelled call's long-poll is still open on the server when the person approves:
    # it must not count as the agent picking the approval up, so the unused approval lapses.
    server = start_server(policy=POLICY, extra_args=("--approval-lapse", "1s"))
    key = server.create_key("agent")
    calls: list[float] = []

    with ExecutionGovernorClient(server.url, server.create_key("approver")) as person:

        async def scenario() -> dict[str, Any]:
            async with AsyncExecutionGovernorClient(server.url, key) as client:

                @govern(tool="refund", operation="process", agent_id=bot, timeout=120, client=client)
                async def refund(amount: float) -> None:
                    calls.append(amount)

                task = asyncio.create_task(refund(950))
                held = await asyncio.to_thread(waited_on, person, bot)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                return held

        held = asyncio.run(scenario())
        person.approve_action(held["id"], "approved after the agent left")
        status_becomes(person, held["id"], "cancelled")
        lapsed = person.get_action(held["id"])
        assert lapsed["decided_by"] == "system:lapse" and lapsed["approval"]["picked_up_at"] is None
        assert "action.picked_up" not in events_of(person, held["id"])
    assert calls == []

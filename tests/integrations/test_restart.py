"""A server restart while agents wait: an SDK `wait_for_decision`, a `govern`-decorated
function and an MCP client call are all waiting on held actions when the server gets
SIGTERM; a new server starts on the same port and database, a person approves, and all
three get the approval and run exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from faramesh import govern
from faramesh.sdk.client import ExecutionGovernorClient
from tests.conftest import ServerProcess
from tests.integrations.conftest import POLICY

pytestmark = pytest.mark.backends("sqlite", "postgresql")

DEMO = Path(__file__).parent / "mcp_demo_server.py"
WAIT = 90.0  # every waiter's own deadline: far beyond the restart


def _thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _mcp_call(url: str, key: str, agent_id: str, log: Path) -> CallToolResult:
    env = {**os.environ, "FARAMESH_URL": url, "FARAMESH_API_KEY": key, "DEMO_LOG": str(log)}
    args = ["-m", "faramesh.cli.main", "mcp", "proxy", "--name", "demo", "--agent-id", agent_id]
    args += ["--timeout", str(WAIT), "--", sys.executable, str(DEMO)]
    params = StdioServerParameters(command=sys.executable, args=args, env=env)

    async def scenario() -> CallToolResult:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            result = await asyncio.wait_for(
                session.call_tool("send_email", {"to": "ops@example.com", "subject": "x"}), WAIT
            )
            assert isinstance(result, CallToolResult)
            return result

    return asyncio.run(scenario())


def test_waiters_survive_a_restart_and_each_action_runs_once(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    first = start_server(policy=POLICY)
    agent_key = first.create_key("agent")
    approver_key = first.create_key("approver")
    run = uuid.uuid4().hex[:8]
    bots = {"wait": f"wait-{run}", "govern": f"govern-{run}", "mcp": f"mcp-{run}"}
    demo_log = tmp_path / "demo.log"
    demo_log.touch()

    agent = ExecutionGovernorClient(first.url, agent_key)
    held = agent.submit_action("refund", "process", {"amount": 500}, agent_id=bots["wait"])
    waiter, waited = _thread(lambda: agent.wait_for_decision(held["id"], timeout=WAIT))

    refunds: list[float] = []

    @govern(
        tool="refund",
        operation="process",
        agent_id=bots["govern"],
        timeout=WAIT,
        client=ExecutionGovernorClient(first.url, agent_key),
    )
    def refund(amount: float) -> str:
        refunds.append(amount)
        return f"refunded {amount}"

    governed, governed_out = _thread(lambda: refund(700))
    mcp, mcp_out = _thread(lambda: _mcp_call(first.url, agent_key, bots["mcp"], demo_log))

    person = ExecutionGovernorClient(first.url, approver_key)

    def pending(bot: str) -> list[dict[str, Any]]:
        return list(person.list_actions(status="pending_approval", agent_id=bot)["actions"])

    _until("all three actions held", lambda: all(pending(bot) for bot in bots.values()))
    ids = {name: pending(bot)[0]["id"] for name, bot in bots.items()}

    # Restart: SIGTERM, then a new server on the same port and database.
    assert first.proc is not None
    first.proc.send_signal(signal.SIGTERM)
    first.proc.wait(timeout=10)
    second = ServerProcess(first.database_url, POLICY, cwd=tmp_path, port=first.port).start()
    try:
        for action_id in ids.values():
            assert person.approve_action(action_id, "after the restart")["status"] == "approved"
        for thread in (waiter, governed, mcp):
            thread.join(timeout=WAIT)
            assert not thread.is_alive()
        assert "error" not in waited, waited
        assert waited["value"]["status"] == "approved"
        assert "error" not in governed_out, governed_out
        assert governed_out["value"] == "refunded 700" and refunds == [700]
        assert "error" not in mcp_out, mcp_out
        result = mcp_out["value"]
        text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
        assert not result.is_error and text == "sent 'x' to ops@example.com", text
        assert [json.loads(line) for line in demo_log.read_text().splitlines()] == [
            {"tool": "send_email", "args": {"to": "ops@example.com", "subject": "x"}}
        ]
        # Exactly one action per agent (no duplicate from a retried submit), each run once.
        for name, bot in bots.items():
            actions = person.list_actions(agent_id=bot)["actions"]
            assert [a["id"] for a in actions] == [ids[name]], actions
        assert person.get_action(ids["govern"])["status"] == "succeeded"
        assert person.get_action(ids["mcp"])["status"] == "succeeded"
        # Each approval was picked up by the agent waiting for it (so none can lapse unused).
        for action_id in ids.values():
            events = [e["event"] for e in person.get_action_events(action_id)]
            assert events.count("action.picked_up") == 1, events
    finally:
        second.stop()
        agent.close()
        person.close()

"""`faramesh mcp proxy` between a real MCP client session and a real MCP server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytest.importorskip("mcp")

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from faramesh.integrations.mcp import downstream_env, faramesh_tool_name
from faramesh.sdk.client import ExecutionGovernorClient
from tests.conftest import ServerProcess, free_port
from tests.integrations.conftest import Approver

DEMO = Path(__file__).parent / "mcp_demo_server.py"
T = TypeVar("T")


@pytest.fixture
def bot() -> str:
    return f"mcp-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def demo_log(tmp_path: Path) -> Path:
    log = tmp_path / "demo.log"
    log.touch()
    return log


def reached(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def proxy(url: str, key: str, log: Path, *options: str) -> StdioServerParameters:
    env = {**os.environ, "FARAMESH_URL": url, "FARAMESH_API_KEY": key, "DEMO_LOG": str(log)}
    args = ["-m", "faramesh.cli.main", "mcp", "proxy", "--name", "demo", *options, "--", sys.executable, str(DEMO)]
    return StdioServerParameters(command=sys.executable, args=args, env=env)


def through(params: StdioServerParameters, body: Callable[[ClientSession], Awaitable[T]]) -> T:
    async def scenario() -> T:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await asyncio.wait_for(body(session), timeout=60)

    return asyncio.run(scenario())


def text(result: Any) -> str:
    assert isinstance(result, CallToolResult)
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def recorded(url: str, key: str, bot: str) -> dict[str, dict[str, Any]]:
    with ExecutionGovernorClient(url, key) as client:
        return {a["tool"]: client.get_action(a["id"]) for a in client.list_actions(agent_id=bot)["actions"]}


def test_tool_names_for_faramesh() -> None:
    assert faramesh_tool_name("demo", "add") == "demo.add"
    assert faramesh_tool_name("my server", "rm -rf!") == "my_server.rm_-rf_"
    assert faramesh_tool_name("ｆｉｌｅｓ", "read") == "files.read"  # NFKC first
    assert len(faramesh_tool_name("s" * 100, "t" * 100)) == 128


def test_downstream_does_not_get_the_faramesh_key() -> None:
    env = downstream_env({"FARAMESH_API_KEY": "k", "FARAMESH_TOKEN": "t", "PATH": "/bin", "FARAMESH_URL": "u"})
    assert env == {"PATH": "/bin", "FARAMESH_URL": "u"}


def test_proxy_exposes_the_same_tools(gov_server: ServerProcess, agent_key: str, demo_log: Path) -> None:
    direct = StdioServerParameters(command=sys.executable, args=[str(DEMO)], env={**os.environ, "DEMO_LOG": "x"})

    async def listing(session: ClientSession) -> list[tuple[str, str | None, dict[str, Any]]]:
        tools = (await session.list_tools()).tools
        return sorted((t.name, t.description, t.input_schema) for t in tools)

    via_proxy = through(proxy(gov_server.url, agent_key, demo_log), listing)
    assert via_proxy == through(direct, listing)
    assert [name for name, _, _ in via_proxy] == ["add", "delete_file", "divide", "send_email"]


def test_allowed_call_is_forwarded_denied_call_never_reaches_the_server(
    gov_server: ServerProcess, agent_key: str, demo_log: Path, bot: str
) -> None:
    async def calls(session: ClientSession) -> tuple[Any, Any]:
        added = await session.call_tool("add", {"a": 2, "b": 3})
        deleted = await session.call_tool("delete_file", {"path": "/etc/passwd"})
        return added, deleted

    added, deleted = through(proxy(gov_server.url, agent_key, demo_log, "--agent-id", bot), calls)
    assert not added.is_error and text(added) == "5"
    assert deleted.is_error
    assert "Not permitted by Faramesh" in text(deleted) and "Deleting files is not allowed" in text(deleted)
    assert reached(demo_log) == [{"tool": "add", "args": {"a": 2, "b": 3}}]
    actions = recorded(gov_server.url, agent_key, bot)
    assert actions["demo.add"]["operation"] == "call"
    assert actions["demo.add"]["params"] == {"a": 2, "b": 3}
    assert actions["demo.add"]["status"] == "succeeded"
    assert actions["demo.add"]["result"]["content"][0]["text"] == "5"
    assert actions["demo.delete_file"]["status"] == "denied"


def test_held_call_is_forwarded_only_after_approval(
    gov_server: ServerProcess, agent_key: str, approver: Approver, demo_log: Path, bot: str
) -> None:
    seen: list[int] = []
    approver.decide_next("demo.send_email", agent_id=bot, before=lambda a: seen.append(len(reached(demo_log))))

    async def call(session: ClientSession) -> Any:
        return await session.call_tool("send_email", {"to": "ceo@example.com", "subject": "hi"})

    result = through(proxy(gov_server.url, agent_key, demo_log, "--agent-id", bot, "--timeout", "30"), call)
    approver.join()
    assert seen == [0]
    assert not result.is_error and text(result) == "sent 'hi' to ceo@example.com"
    assert reached(demo_log) == [{"tool": "send_email", "args": {"to": "ceo@example.com", "subject": "hi"}}]
    assert recorded(gov_server.url, agent_key, bot)["demo.send_email"]["status"] == "succeeded"


def test_held_call_denied_by_a_person(
    gov_server: ServerProcess, agent_key: str, approver: Approver, demo_log: Path, bot: str
) -> None:
    approver.decide_next("demo.send_email", agent_id=bot, approve=False, reason="not to the CEO")

    async def call(session: ClientSession) -> Any:
        return await session.call_tool("send_email", {"to": "ceo@example.com", "subject": "hi"})

    result = through(proxy(gov_server.url, agent_key, demo_log, "--agent-id", bot, "--timeout", "30"), call)
    approver.join()
    assert result.is_error and "not to the CEO" in text(result)
    assert reached(demo_log) == []


def test_tool_error_downstream_is_reported_as_failed(
    gov_server: ServerProcess, agent_key: str, demo_log: Path, bot: str
) -> None:
    async def call(session: ClientSession) -> Any:
        return await session.call_tool("divide", {"a": 1, "b": 0})

    result = through(proxy(gov_server.url, agent_key, demo_log, "--agent-id", bot), call)
    assert result.is_error and "division by zero" in text(result)
    action = recorded(gov_server.url, agent_key, bot)["demo.divide"]
    assert action["status"] == "failed" and "division by zero" in action["error"]


def test_unreachable_faramesh_fails_closed(demo_log: Path) -> None:
    async def call(session: ClientSession) -> Any:
        return await session.call_tool("add", {"a": 1, "b": 1})

    result = through(proxy(f"http://127.0.0.1:{free_port()}", "fm_x", demo_log, "--timeout", "2"), call)
    assert result.is_error and "could not decide" in text(result)
    assert reached(demo_log) == []


@pytest.mark.usefixtures("edited_approvals")
def test_held_call_is_forwarded_with_the_approved_arguments(
    gov_server: ServerProcess, agent_key: str, approver: Approver, demo_log: Path, bot: str
) -> None:
    approver.decide_next("demo.send_email", agent_id=bot, params={"to": "team@example.com", "subject": "hi"})

    async def call(session: ClientSession) -> Any:
        return await session.call_tool("send_email", {"to": "everyone@example.com", "subject": "hi"})

    result = through(proxy(gov_server.url, agent_key, demo_log, "--agent-id", bot, "--timeout", "30"), call)
    approver.join()
    assert text(result) == "sent 'hi' to team@example.com"
    assert reached(demo_log) == [{"tool": "send_email", "args": {"to": "team@example.com", "subject": "hi"}}]


def test_held_call_sends_progress_notifications_until_decided(
    gov_server: ServerProcess, agent_key: str, approver: Approver, demo_log: Path, bot: str
) -> None:
    progress: list[tuple[float, str | None]] = []
    two_seen = threading.Event()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))
        if len(progress) >= 2:
            two_seen.set()

    # The person decides only once the client has heard twice that the call is still held.
    approver.decide_next("demo.send_email", agent_id=bot, before=lambda a: two_seen.wait(20))

    async def call(session: ClientSession) -> Any:
        return await session.call_tool(
            "send_email", {"to": "a@example.com", "subject": "p"}, progress_callback=on_progress
        )

    options = ("--agent-id", bot, "--timeout", "30", "--progress-interval", "0.2")
    result = through(proxy(gov_server.url, agent_key, demo_log, *options), call)
    approver.join()
    assert two_seen.is_set()
    assert not result.is_error and text(result) == "sent 'p' to a@example.com"
    values = [value for value, _ in progress]
    assert values == sorted(values) and len(set(values)) == len(values)  # progress only grows
    assert "waiting for Faramesh to decide on demo.send_email" in str(progress[0][1])

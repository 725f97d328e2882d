"""The Python SDK against a real server: sync and async, errors, waiting."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest

from faramesh.sdk import (
    AsyncExecutionGovernorClient,
    AuthenticationError,
    ConflictError,
    ExecutionGovernorClient,
    FarameshConnectionError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from tests.conftest import ServerProcess


def test_env_variables_and_aliases(monkeypatch: pytest.MonkeyPatch, server: ServerProcess) -> None:
    key = server.create_key("agent")
    monkeypatch.setenv("FARAMESH_BASE_URL", server.url)
    monkeypatch.setenv("FARAMESH_TOKEN", key)
    monkeypatch.delenv("FARAMESH_URL", raising=False)
    monkeypatch.delenv("FARAMESH_API_KEY", raising=False)
    client = ExecutionGovernorClient()
    assert client.submit_action("refund", "process", {"amount": 1})["status"] == "allowed"
    monkeypatch.setenv("FARAMESH_URL", server.url)
    monkeypatch.setenv("FARAMESH_API_KEY", "fm_wrong")
    with pytest.raises(AuthenticationError):
        ExecutionGovernorClient().submit_action("refund", "process", {"amount": 1})


def test_typed_errors_carry_server_message(server: ServerProcess) -> None:
    agent = ExecutionGovernorClient(server.url, server.create_key("agent"))
    approver = ExecutionGovernorClient(server.url, server.create_key("approver"))
    with pytest.raises(NotFoundError, match="no action"):
        agent.get_action("missing")
    with pytest.raises(ValidationError) as err:
        agent.submit_action("refund tool", "process", {})
    assert err.value.field == "tool"
    pending = agent.submit_action("refund", "process", {"amount": 1000})
    with pytest.raises(PermissionDeniedError):
        agent.approve_action(pending["id"])
    with pytest.raises(ConflictError) as conflict:
        agent.report_result(pending["id"], success=True)
    assert conflict.value.current_status == "pending_approval"
    assert approver.deny_action(pending["id"], reason="no")["status"] == "denied"


def test_unreachable_server_raises_and_never_allows() -> None:
    client = ExecutionGovernorClient("http://127.0.0.1:9", "fm_x", timeout=2)
    with pytest.raises(FarameshConnectionError):
        client.submit_action("refund", "process", {"amount": 1})
    with pytest.raises(ConnectionError):  # also a builtin ConnectionError
        client.wait_for_decision("x", timeout=1)


def test_wait_for_decision_returns_when_approved(server: ServerProcess) -> None:
    agent = ExecutionGovernorClient(server.url, server.create_key("agent"))
    approver = ExecutionGovernorClient(server.url, server.create_key("approver"))
    action = agent.submit_action("refund", "process", {"amount": 300})
    timer = threading.Timer(0.5, approver.approve_action, args=(action["id"], "ok"))
    timer.start()
    start = time.monotonic()
    decided = agent.wait_for_decision(action["id"], timeout=30)
    assert decided["status"] == "approved"
    assert time.monotonic() - start < 10


def test_wait_for_decision_times_out_with_pending_action(server: ServerProcess) -> None:
    agent = ExecutionGovernorClient(server.url, server.create_key("agent"))
    action = agent.submit_action("refund", "process", {"amount": 300})
    assert agent.wait_for_decision(action["id"], timeout=0.3)["status"] == "pending_approval"


def test_async_client(server: ServerProcess) -> None:
    async def run() -> None:
        async with (
            AsyncExecutionGovernorClient(server.url, server.create_key("agent")) as agent,
            AsyncExecutionGovernorClient(server.url, server.create_key("approver")) as approver,
        ):
            small = await agent.submit_action("refund", "process", {"amount": 10})
            assert small["status"] == "allowed"
            done = await agent.report_result(small["id"], success=True, result={"ok": 1})
            assert done["status"] == "succeeded"
            big = await agent.submit_action("refund", "process", {"amount": 1000})
            waiter = asyncio.create_task(agent.wait_for_decision(big["id"], timeout=30))
            await asyncio.sleep(0.2)
            await approver.deny_action(big["id"], reason="nope")
            assert (await waiter)["status"] == "denied"
            listed = await agent.list_actions(limit=10)
            assert {a["id"] for a in listed["actions"]} == {small["id"], big["id"]}
            with pytest.raises(NotFoundError):
                await agent.get_action("missing")

    asyncio.run(run())


async def next_for(events: AsyncIterator[dict[str, Any]], action_id: str, seen: list[str]) -> dict[str, Any]:
    """The next event about `action_id`; `seen` collects the action ids passed on the way."""
    async for event in events:
        seen.append(event["action_id"])
        if event["action_id"] == action_id:
            return event
    raise AssertionError(f"the stream ended before an event for {action_id}")


def test_async_stream_events_replays_then_follows(server: ServerProcess) -> None:
    """The async client's stream: with Last-Event-ID it first replays from the audit
    log, then yields live changes as the same dicts the sync client yields."""
    key = server.create_key("agent")

    async def run() -> dict[str, Any]:
        async with AsyncExecutionGovernorClient(server.url, key) as agent, asyncio.timeout(60):
            first = await agent.submit_action("refund", "process", {"amount": 1})
            seen: list[str] = []
            async with aclosing(agent.stream_events(last_event_id="0")) as events:
                replayed = await next_for(events, first["id"], seen)
                assert replayed["type"] == "action.created" and replayed["status"] == "allowed"
                assert replayed["action"]["params"] == {"amount": 1}
                second = await agent.submit_action("refund", "process", {"amount": 2})
                live = await next_for(events, second["id"], seen)
                assert live["type"] == "action.created" and live["action"]["params"] == {"amount": 2}
                assert live["seq"] > replayed["seq"]
            # Resuming after the first action's event skips it and starts at the second.
            resumed: list[str] = []
            async with aclosing(agent.stream_events(last_event_id=str(replayed["seq"]))) as events:
                again = await next_for(events, second["id"], resumed)
            assert first["id"] not in resumed and again["seq"] == live["seq"]
            return replayed

    replayed = asyncio.run(run())
    # The sync client yields the same event, the same dict.
    with ExecutionGovernorClient(server.url, key) as sync_agent:
        sync_events = sync_agent.stream_events(last_event_id="0")
        assert next(e for e in sync_events if e["action_id"] == replayed["action_id"]) == replayed
        sync_events.close()


def test_stream_events_errors(server: ServerProcess) -> None:
    async def run() -> None:
        async with AsyncExecutionGovernorClient(server.url, "fm_wrong") as bad:
            with pytest.raises(AuthenticationError):
                async for _ in bad.stream_events():
                    pass
        async with AsyncExecutionGovernorClient("http://127.0.0.1:9", "fm_x", timeout=2) as gone:
            with pytest.raises(FarameshConnectionError):
                async for _ in gone.stream_events():
                    pass

    asyncio.run(run())
    with pytest.raises(AuthenticationError):
        next(ExecutionGovernorClient(server.url, "fm_wrong").stream_events())

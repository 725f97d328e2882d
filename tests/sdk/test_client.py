"""The Python SDK against a real server: sync and async, errors, waiting."""

from __future__ import annotations

import asyncio
import threading
import time

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

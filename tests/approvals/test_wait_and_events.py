"""Waiting without polling: the long-poll wait endpoint, the SDK's wait_for_decision
(sync and async) and the server-sent event stream with Last-Event-ID resume."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from typing import Any

import httpx
import pytest

from faramesh.sdk.client import AsyncExecutionGovernorClient, ExecutionGovernorClient
from tests.approvals.support import decide, submit
from tests.conftest import ServerProcess, auth

# Within one server the waiter is woken in-process; its only fallback is a re-read every
# 5 s. A client read timeout below that fails the test if the wake-up is missing.
WAKE_READ_TIMEOUT = 4.0


@pytest.fixture(scope="module")
def keys(srv: ServerProcess) -> dict[str, str]:
    return {"agent": srv.create_key("agent"), "approver": srv.create_key("approver")}


def _wait_in_thread(srv: ServerProcess, key: str, action_id: str, timeout: float = 60) -> queue.Queue[Any]:
    out: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        try:
            r = httpx.get(
                f"{srv.url}/v1/actions/{action_id}/wait",
                params={"timeout": timeout},
                headers=auth(key),
                timeout=httpx.Timeout(10, read=WAKE_READ_TIMEOUT),
            )
            out.put((r, time.monotonic()))
        except Exception as exc:  # handed to the test thread
            out.put(exc)

    threading.Thread(target=run, daemon=True).start()
    return out


@pytest.mark.parametrize("verb", ["approve", "deny"])
def test_wait_returns_as_soon_as_another_client_decides(srv: ServerProcess, keys: dict[str, str], verb: str) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=500)
    assert action["status"] == "pending_approval"
    result = _wait_in_thread(srv, keys["agent"], action["id"])
    time.sleep(0.3)  # let the wait reach the server first
    assert result.empty(), "the wait returned before anyone decided"
    sent = time.monotonic()
    r = decide(srv, keys["approver"], action["id"], verb, reason="checked")
    assert r.status_code == 200, r.text
    outcome = result.get(timeout=30)
    if isinstance(outcome, Exception):
        raise AssertionError(f"the wait was not woken by the decision: {outcome!r}")
    response, returned = outcome
    assert response.status_code == 200
    waited = response.json()
    assert waited["status"] == ("approved" if verb == "approve" else "denied")
    assert waited["decision_reason"] == "checked"
    print(f"wait returned {1000 * (returned - sent):.1f} ms after the {verb} request was sent")


def test_wait_times_out_with_the_still_pending_action(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=500)
    r = httpx.get(
        f"{srv.url}/v1/actions/{action['id']}/wait", params={"timeout": 0.5}, headers=auth(keys["agent"]), timeout=10
    )
    assert r.status_code == 200
    assert r.json()["status"] == "pending_approval" and r.json()["id"] == action["id"]


def test_wait_on_a_decided_action_returns_at_once(srv: ServerProcess, keys: dict[str, str]) -> None:
    allowed = submit(srv, keys["agent"], "refund", "process", amount=5)
    r = httpx.get(
        f"{srv.url}/v1/actions/{allowed['id']}/wait",
        params={"timeout": 60},
        headers=auth(keys["agent"]),
        timeout=httpx.Timeout(10, read=WAKE_READ_TIMEOUT),
    )
    assert r.json()["status"] == "allowed"


def test_wait_refuses_bad_timeouts_and_other_agents(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=500)
    url = f"{srv.url}/v1/actions/{action['id']}/wait"
    for bad in ("-1", "abc", "100000"):
        r = httpx.get(url, params={"timeout": bad}, headers=auth(keys["agent"]))
        assert r.status_code == 422 and r.json()["error"]["field"] == "timeout", r.text
    stranger = srv.create_key("agent")
    r = httpx.get(url, params={"timeout": 0.1}, headers=auth(stranger))
    assert r.status_code == 404


def test_sdk_wait_for_decision_uses_the_wait_endpoint(srv: ServerProcess, keys: dict[str, str]) -> None:
    agent = ExecutionGovernorClient(srv.url, keys["agent"], timeout=WAKE_READ_TIMEOUT)
    approver = ExecutionGovernorClient(srv.url, keys["approver"])
    action = agent.submit_action("refund", "process", {"amount": 700, "customer_id": "c1"})
    threading.Timer(0.3, approver.approve_action, args=(action["id"], "fine")).start()
    # The client's read timeout is the wait slice plus 4 s: a missing wake-up would not
    # change the result, but the long-poll must return the updated action dict.
    decided = agent.wait_for_decision(action["id"], timeout=60)
    assert decided["status"] == "approved" and decided["id"] == action["id"]
    assert decided["params"] == {"amount": 700, "customer_id": "c1"}
    assert [a["approver"] for a in decided["approvals"]] == [approver.get_action(action["id"])["decided_by"]]
    still = agent.submit_action("refund", "process", {"amount": 700})
    assert agent.wait_for_decision(still["id"], timeout=0.3)["status"] == "pending_approval"


def test_async_wait_for_decision(srv: ServerProcess, keys: dict[str, str]) -> None:
    async def run() -> None:
        async with (
            AsyncExecutionGovernorClient(srv.url, keys["agent"]) as agent,
            AsyncExecutionGovernorClient(srv.url, keys["approver"]) as approver,
        ):
            action = await agent.submit_action("refund", "process", {"amount": 900})
            waiter = asyncio.create_task(agent.wait_for_decision(action["id"], timeout=60))
            await asyncio.sleep(0.3)
            assert not waiter.done()
            await approver.deny_action(action["id"], reason="too much")
            decided = await asyncio.wait_for(waiter, 30)
            assert decided["status"] == "denied" and decided["reason"] == "too much"

    asyncio.run(run())


class SSEReader:
    """Reads /v1/events in a thread; every event is (id, data dict)."""

    def __init__(self, srv: ServerProcess, key: str, last_event_id: str | None = None) -> None:
        self.events: queue.Queue[tuple[str | None, dict[str, Any]]] = queue.Queue()
        self.connected = threading.Event()
        self.content_type = ""
        self._stop = threading.Event()
        headers = auth(key) | ({"Last-Event-ID": last_event_id} if last_event_id else {})
        self._thread = threading.Thread(target=self._run, args=(srv.url, headers), daemon=True)
        self._thread.start()
        assert self.connected.wait(10), "the event stream did not open"
        assert self.content_type.startswith("text/event-stream")

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            with httpx.stream("GET", url + "/v1/events", headers=headers, timeout=httpx.Timeout(10, read=None)) as r:
                self.content_type = r.headers.get("content-type", "")
                event_id = None
                for line in r.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith("id:"):
                        event_id = line[3:].strip()
                    elif line.startswith("data:"):
                        self.events.put((event_id, json.loads(line[5:])))
        except httpx.HTTPError:
            if not self._stop.is_set():
                raise

    def next_for(self, action_id: str, timeout: float = 15) -> tuple[str | None, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            event_id, data = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if data.get("action_id") == action_id:
                return event_id, data

    def close(self) -> None:
        self._stop.set()


def test_event_stream_has_every_change_and_resumes_after_last_event_id(
    srv: ServerProcess, keys: dict[str, str]
) -> None:
    reader = SSEReader(srv, keys["approver"])
    try:
        action = submit(srv, keys["agent"], "refund", "process", amount=300)
        created_id, created = reader.next_for(action["id"])
        assert created["type"] == "action.created" and created["status"] == "pending_approval"
        assert created_id == str(created["seq"])
        assert decide(srv, keys["approver"], action["id"], reason="ok").status_code == 200
        approved_id, approved = reader.next_for(action["id"])
        assert approved["type"] == "action.approved" and approved["action"]["status"] == "approved"
        r = httpx.post(
            f"{srv.url}/v1/actions/{action['id']}/result", json={"success": True}, headers=auth(keys["agent"])
        )
        assert r.status_code == 200
        _, done = reader.next_for(action["id"])
        assert done["type"] == "action.succeeded"
        assert int(created_id or 0) < int(approved_id or 0)
    finally:
        reader.close()

    # A client that saw only the first event reconnects and gets what it missed, in order.
    resumed = SSEReader(srv, keys["approver"], last_event_id=created_id)
    try:
        types = [resumed.next_for(action["id"])[1]["type"] for _ in range(2)]
        assert types == ["action.approved", "action.succeeded"]
    finally:
        resumed.close()


def test_agents_only_see_their_own_events(srv: ServerProcess, keys: dict[str, str]) -> None:
    other = srv.create_key("agent")
    reader = SSEReader(srv, other)
    try:
        theirs = submit(srv, keys["agent"], "refund", "process", amount=20)
        mine = submit(srv, other, "refund", "process", amount=21)
        _, event = reader.next_for(mine["id"])
        assert event["type"] == "action.created"
        seen = []
        while not reader.events.empty():
            seen.append(reader.events.get_nowait()[1].get("action_id"))
        assert theirs["id"] not in seen
    finally:
        reader.close()

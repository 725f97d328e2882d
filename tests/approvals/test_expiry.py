"""Expiry: a pending action whose approval window passes is denied as expired by the
server's sweeper, even when nobody reads it; the transition is a compare-and-set.

The app runs in-process on a fake clock: the window passes when the test moves the
clock, never by sleeping.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest

from faramesh.sdk.client import ExecutionGovernorClient
from tests.approvals.support import POLICY, decide, eventually, get, submit
from tests.inprocess import BASE_URL, InProcessServer, auth


@pytest.fixture(scope="module")
def keys(client: InProcessServer) -> dict[str, str]:
    return {"agent": client.create_key("agent"), "approver": client.create_key("approver")}


def _events(client: InProcessServer, key: str, action_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/actions/{action_id}/events", headers=auth(key))
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()["events"]
    return events


def _expired(client: InProcessServer, key: str, action_id: str) -> list[dict[str, Any]]:
    return [e for e in _events(client, key, action_id) if e["event"] == "action.expired"]


def test_rule_timeout_denies_unread_action_by_itself(client: InProcessServer, keys: dict[str, str]) -> None:
    action = submit(client, keys["agent"], "deploy", "prod", service="api")
    assert action["status"] == "pending_approval"
    assert action["approval"]["expires_at"] is not None
    before = client.get(f"/v1/actions/{action['id']}", headers=auth(keys["agent"])).json()
    assert before["status"] == "pending_approval"
    # The rule's window is 1 s. Only the clock moves; the app's own sweeper must act,
    # since reading an action never expires it.
    expires_at = client.clock.advance(2.0)
    [expired] = eventually(lambda: _expired(client, keys["approver"], action["id"]), timeout=10)
    assert expired["actor"] == "system:expiry"
    assert expired["ts"] <= expires_at
    after = get(client, keys["agent"], action["id"])
    assert after["status"] == "denied"
    assert after["reason"].startswith("Approval expired") and "1s" in after["reason"]
    assert after["decided_by"] == "system:expiry"


def test_waiting_agent_is_woken_by_expiry(client: InProcessServer, keys: dict[str, str]) -> None:
    agent = ExecutionGovernorClient(BASE_URL, keys["agent"], transport=client.transport)
    action = agent.submit_action("deploy", "prod", {"service": "web"})
    decided: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: decided.append(agent.wait_for_decision(action["id"], timeout=30)))
    waiter.start()
    client.advance(2.0)
    waiter.join(30)
    assert not waiter.is_alive(), "the waiting agent was not woken"
    [final] = decided
    assert final["status"] == "denied" and "expired" in final["reason"]


def test_deciding_after_expiry_is_a_conflict(client: InProcessServer, keys: dict[str, str]) -> None:
    action = submit(client, keys["agent"], "deploy", "prod", service="db")
    client.advance(2.0)
    assert get(client, keys["agent"], action["id"])["status"] == "denied"
    r = decide(client, keys["approver"], action["id"], reason="too late")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "invalid_transition" and r.json()["error"]["status"] == "denied"
    after = get(client, keys["approver"], action["id"])
    assert after["status"] == "denied" and after["approvals"] == []


def test_an_approval_inside_the_window_stands(client: InProcessServer, keys: dict[str, str]) -> None:
    action = submit(client, keys["agent"], "deploy", "prod", service="cache")
    assert decide(client, keys["approver"], action["id"], reason="quick").status_code == 200
    client.advance(1.5)  # past the window: the sweep must leave a decided action alone
    after = get(client, keys["agent"], action["id"])
    assert after["status"] == "approved"
    assert [e["event"] for e in _events(client, keys["agent"], action["id"])] == [
        "action.submitted",
        "action.approved",
        "action.picked_up",  # its agent read the approval
    ]


def test_rule_without_timeout_gets_the_default_of_24_hours(client: InProcessServer, keys: dict[str, str]) -> None:
    action = submit(client, keys["agent"], "shell", "run", cmd="ls")
    created = datetime.fromisoformat(action["created_at"])
    assert datetime.fromisoformat(action["approval"]["expires_at"]) - created == timedelta(hours=24)
    client.advance(24 * 3600 - 1)
    assert get(client, keys["agent"], action["id"])["status"] == "pending_approval"
    client.advance(2)
    after = get(client, keys["agent"], action["id"])
    assert after["status"] == "denied" and after["reason"] == "Approval expired: no decision within 1d"


def test_never_keeps_a_rule_without_timeout_open_only_when_configured(make_client: Any) -> None:
    app: InProcessServer = make_client(policy=POLICY, approval_timeout=None)
    agent = app.create_key("agent")
    action = submit(app, agent, "shell", "run", cmd="ls")
    assert action["approval"]["expires_at"] is None
    app.advance(30 * 24 * 3600)
    assert get(app, agent, action["id"])["status"] == "pending_approval"


def test_server_default_approval_timeout(make_client: Any) -> None:
    app: InProcessServer = make_client(policy=POLICY, approval_timeout=1.0)
    agent = app.create_key("agent")
    action = submit(app, agent, "shell", "run", cmd="ls")
    assert action["approval"]["expires_at"] is not None
    app.advance(0.5)
    assert get(app, agent, action["id"])["status"] == "pending_approval"
    app.advance(1.0)
    [expired] = _expired(app, agent, action["id"])
    after = get(app, agent, action["id"])
    assert after["status"] == "denied" and after["reason"] == "Approval expired: no decision within 1s"
    assert expired["actor"] == "system:expiry"


@pytest.mark.parametrize("offset", [0.9, 0.999, 1.0, 1.001, 1.1])
def test_approval_racing_the_expiry_has_exactly_one_winner(
    client: InProcessServer, keys: dict[str, str], offset: float
) -> None:
    action = submit(client, keys["agent"], "deploy", "prod", service=f"race-{offset}")
    client.clock.advance(offset)  # submitted at the clock's time; its window is 1 s
    barrier = threading.Barrier(2)
    responses: list[Any] = []

    def approve() -> None:
        barrier.wait()
        responses.append(decide(client, keys["approver"], action["id"], reason="just in time"))

    def sweep() -> None:
        barrier.wait()
        client.governor.expire_due()

    threads = [threading.Thread(target=approve), threading.Thread(target=sweep)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    client.governor.expire_due()
    [r] = responses
    final = get(client, keys["agent"], action["id"])
    events = [e["event"] for e in _events(client, keys["agent"], action["id"])]
    if r.status_code == 200:
        assert final["status"] == "approved" and "action.expired" not in events
    else:
        assert r.status_code == 409, r.text
        assert final["status"] == "denied" and events.count("action.expired") == 1
        assert "action.approved" not in events
    # Past the window an approval can never win; inside it, nothing expires the action.
    if offset > 1.0:
        assert final["status"] == "denied"
    elif offset < 1.0:
        assert final["status"] == "approved"

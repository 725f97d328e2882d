"""Expiry: a pending action whose approval window passes is denied as expired by the
server's sweeper, even when nobody reads it; the transition is a compare-and-set."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from faramesh.sdk.client import ExecutionGovernorClient
from tests.approvals.support import POLICY, decide, eventually, get, submit
from tests.conftest import ServerProcess, auth


@pytest.fixture(scope="module")
def keys(srv: ServerProcess) -> dict[str, str]:
    return {"agent": srv.create_key("agent"), "approver": srv.create_key("approver")}


def _events(srv: ServerProcess, key: str, action_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{srv.url}/v1/actions/{action_id}/events", headers=auth(key), timeout=10)
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()["events"]
    return events


def test_rule_timeout_denies_unread_action_by_itself(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "deploy", "prod", service="api")
    assert action["status"] == "pending_approval"
    assert action["approval"]["expires_at"] is not None
    time.sleep(2.0)  # the rule's window is 1 s; nobody looks at the action meanwhile
    looked_at = time.time()
    events = _events(srv, keys["approver"], action["id"])
    expired = [e for e in events if e["event"] == "action.expired"]
    assert len(expired) == 1
    assert expired[0]["actor"] == "system:expiry"
    assert expired[0]["ts"] < looked_at, "expiry happened only when the action was read"
    after = get(srv, keys["agent"], action["id"])
    assert after["status"] == "denied"
    assert after["reason"].startswith("Approval expired") and "1s" in after["reason"]
    assert after["decided_by"] == "system:expiry"


def test_waiting_agent_is_woken_by_expiry(srv: ServerProcess, keys: dict[str, str]) -> None:
    agent = ExecutionGovernorClient(srv.url, keys["agent"])
    action = agent.submit_action("deploy", "prod", {"service": "web"})
    decided = agent.wait_for_decision(action["id"], timeout=30)
    assert decided["status"] == "denied" and "expired" in decided["reason"]


def test_deciding_after_expiry_is_a_conflict(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "deploy", "prod", service="db")
    eventually(lambda: get(srv, keys["agent"], action["id"])["status"] == "denied")
    r = decide(srv, keys["approver"], action["id"], reason="too late")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "invalid_transition" and r.json()["error"]["status"] == "denied"
    after = get(srv, keys["approver"], action["id"])
    assert after["status"] == "denied" and after["approvals"] == []


def test_an_approval_inside_the_window_stands(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "deploy", "prod", service="cache")
    assert decide(srv, keys["approver"], action["id"], reason="quick").status_code == 200
    time.sleep(1.5)  # past the window: the sweeper must leave a decided action alone
    after = get(srv, keys["agent"], action["id"])
    assert after["status"] == "approved"
    assert [e["event"] for e in _events(srv, keys["agent"], action["id"])] == ["action.submitted", "action.approved"]


def test_rule_without_timeout_stays_pending_without_a_server_default(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "shell", "run", cmd="ls")
    assert action["approval"]["expires_at"] is None
    time.sleep(1.5)
    assert get(srv, keys["agent"], action["id"])["status"] == "pending_approval"


def test_server_default_approval_timeout(start_server: Any, tmp_path: Path) -> None:
    server: ServerProcess = start_server(policy=POLICY, extra_args=("--approval-timeout", "1s"))
    agent = server.create_key("agent")
    action = submit(server, agent, "shell", "run", cmd="ls")
    assert action["approval"]["expires_at"] is not None
    time.sleep(2.0)
    looked_at = time.time()
    expired = [e for e in _events(server, agent, action["id"]) if e["event"] == "action.expired"]
    assert len(expired) == 1 and expired[0]["ts"] < looked_at
    after = get(server, agent, action["id"])
    assert after["status"] == "denied" and after["reason"] == "Approval expired: no decision within 1s"


def test_approval_racing_the_expiry_has_exactly_one_winner(srv: ServerProcess, keys: dict[str, str]) -> None:
    outcomes = set()
    for offset in (0.9, 0.95, 1.0, 1.05):
        action = submit(srv, keys["agent"], "deploy", "prod", service=f"race-{offset}")
        created = time.time()
        time.sleep(max(0.0, created + offset - time.time()))
        r = decide(srv, keys["approver"], action["id"], reason="just in time")
        final = eventually(
            lambda a=action: (s := get(srv, keys["agent"], a["id"]))["status"] != "pending_approval" and s
        )
        events = [e["event"] for e in _events(srv, keys["agent"], action["id"])]
        if r.status_code == 200:
            assert final["status"] == "approved" and "action.expired" not in events
        else:
            assert r.status_code == 409
            assert final["status"] == "denied" and events.count("action.expired") == 1
            assert "action.approved" not in events
        outcomes.add(final["status"])
    assert outcomes <= {"approved", "denied"}

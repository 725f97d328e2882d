"""Held actions that outlive human time: cancel, lapse of unused approvals, re-attach of
identical retries and agent presence, on SQLite and PostgreSQL. The app runs in-process
on a fake clock: windows pass when the test moves the clock, never by sleeping.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from faramesh.cli.main import main
from tests.approvals.support import POLICY, eventually, receiving
from tests.inprocess import InProcessServer, auth

pytestmark = pytest.mark.backends("sqlite", "postgresql")

HELD = {"tool": "refund", "operation": "process", "params": {"amount": 500, "order": "o-1"}}


@pytest.fixture
def app(make_client: Any) -> InProcessServer:
    server: InProcessServer = make_client(policy=POLICY)
    return server


@pytest.fixture
def keys(app: InProcessServer) -> dict[str, str]:
    return {
        "agent": app.create_key("agent", agent_id="billing-bot"),
        "other": app.create_key("agent"),
        "approver": app.create_key("approver", name="ann"),
        "admin": app.admin_key,
    }


def post(app: InProcessServer, path: str, key: str, body: Any = None) -> httpx.Response:
    return app.post(path, json=body, headers=auth(key))


def submit(app: InProcessServer, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return post(app, "/v1/actions", key, body or HELD)


def get(app: InProcessServer, key: str, action_id: str) -> dict[str, Any]:
    r = app.get(f"/v1/actions/{action_id}", headers=auth(key))
    assert r.status_code == 200, r.text
    return dict(r.json())


def events(app: InProcessServer, action_id: str) -> list[dict[str, Any]]:
    r = app.get(f"/v1/actions/{action_id}/events", headers=auth(app.admin_key))
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


def count_actions(app: InProcessServer) -> int:
    r = app.get("/v1/actions", params={"limit": 500}, headers=auth(app.admin_key))
    return len(r.json()["actions"])


def audit_is_intact(app: InProcessServer) -> None:
    """`faramesh audit verify` finds the chain and every action's state consistent."""
    result = CliRunner().invoke(main, ["audit", "verify"], env={"FARAMESH_DATABASE_URL": app.database_url})
    assert result.exit_code == 0, result.output


# -- cancel --------------------------------------------------------------------------------------------------


def test_the_agent_cancels_a_held_action_and_nobody_can_decide_it_afterwards(
    app: InProcessServer, keys: dict[str, str]
) -> None:
    action = submit(app, keys["agent"]).json()
    r = post(app, f"/v1/actions/{action['id']}/cancel", keys["agent"], {"reason": "the user closed the chat"})
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["decision_reason"] == "the user closed the chat"
    assert "approval_token" not in cancelled

    for verb in ("approve", "deny"):
        r = post(app, f"/v1/actions/{action['id']}/{verb}", keys["approver"], {"reason": "late"})
        assert r.status_code == 409, r.text
        assert r.json()["error"]["status"] == "cancelled"
    r = post(app, f"/v1/actions/{action['id']}/result", keys["agent"], {"success": True})
    assert r.status_code == 409
    r = post(app, f"/v1/actions/{action['id']}/cancel", keys["agent"])
    assert r.status_code == 409 and r.json()["error"]["status"] == "cancelled"

    trail = events(app, action["id"])
    assert [e["event"] for e in trail] == ["action.submitted", "action.cancelled"]
    assert trail[-1]["data"] == {
        "status": "cancelled",
        "previous": "pending_approval",
        "reason": "the user closed the chat",
    }
    listed = app.get("/v1/actions", params={"status": "cancelled"}, headers=auth(keys["approver"])).json()
    assert [a["id"] for a in listed["actions"]] == [action["id"]]
    audit_is_intact(app)


def test_who_may_cancel(app: InProcessServer, keys: dict[str, str]) -> None:
    action = submit(app, keys["agent"]).json()
    path = f"/v1/actions/{action['id']}/cancel"
    assert post(app, path, keys["other"]).status_code == 404  # another agent does not see it
    r = post(app, path, keys["approver"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert get(app, keys["admin"], action["id"])["status"] == "pending_approval"
    r = post(app, path, keys["admin"])  # an admin may, and is named
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["decided_by"].startswith("key:") and "Cancelled by key:" in r.json()["decision_reason"]


def test_only_held_or_approved_unrun_actions_can_be_cancelled(app: InProcessServer, keys: dict[str, str]) -> None:
    allowed = submit(app, keys["agent"], {"tool": "refund", "operation": "process", "params": {"amount": 5}}).json()
    assert allowed["status"] == "allowed"
    r = post(app, f"/v1/actions/{allowed['id']}/cancel", keys["agent"])
    assert r.status_code == 409 and r.json()["error"]["status"] == "allowed"

    approved = submit(app, keys["agent"]).json()
    assert post(app, f"/v1/actions/{approved['id']}/approve", keys["approver"]).status_code == 200
    r = post(app, f"/v1/actions/{approved['id']}/cancel", keys["agent"], {"reason": "no longer needed"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert events(app, approved["id"])[-1]["data"]["previous"] == "approved"
    assert post(app, f"/v1/actions/{approved['id']}/result", keys["agent"], {"success": True}).status_code == 409

    done = submit(app, keys["agent"], {**HELD, "params": {"amount": 600}}).json()
    post(app, f"/v1/actions/{done['id']}/approve", keys["approver"])
    assert post(app, f"/v1/actions/{done['id']}/result", keys["agent"], {"success": True}).status_code == 200
    r = post(app, f"/v1/actions/{done['id']}/cancel", keys["agent"])
    assert r.status_code == 409 and r.json()["error"]["status"] == "succeeded"


@pytest.mark.parametrize(
    ("body", "field"),
    [({"reason": 5}, "reason"), ({"reason": "a\u0000b"}, "reason"), ({"reason": "x" * 2001}, "reason")],
)
def test_a_bad_cancel_reason_is_refused_and_changes_nothing(
    app: InProcessServer, keys: dict[str, str], body: dict[str, Any], field: str
) -> None:
    action = submit(app, keys["agent"]).json()
    r = post(app, f"/v1/actions/{action['id']}/cancel", keys["agent"], body)
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json()["error"])
    assert get(app, keys["agent"], action["id"])["status"] == "pending_approval"


def test_cancel_racing_an_approval_has_exactly_one_winner(app: InProcessServer, keys: dict[str, str]) -> None:
    for n in range(8):
        action = submit(app, keys["agent"], {**HELD, "params": {"amount": 200 + n}}).json()
        barrier = threading.Barrier(2)

        def call(path: str, key: str, aid: str = action["id"], barrier: threading.Barrier = barrier) -> int:
            barrier.wait()
            return post(app, f"/v1/actions/{aid}/{path}", key, {"reason": "race"}).status_code

        with ThreadPoolExecutor(2) as pool:
            cancelled = pool.submit(call, "cancel", keys["agent"])
            approved = pool.submit(call, "approve", keys["approver"])
            codes = (cancelled.result(), approved.result())
        final = get(app, keys["admin"], action["id"])["status"]
        if codes == (200, 409):
            assert final == "cancelled"
        else:
            # The approval won; the cancel then still withdraws the approved, unrun action
            # (200), or lost the race outright (409). Either way one transition per request.
            assert codes[1] == 200 and final in ("approved", "cancelled")
            assert (codes[0] == 200) == (final == "cancelled")
    audit_is_intact(app)


def test_a_cancel_reaches_webhooks(make_client: Any, tmp_path: Path) -> None:
    with receiving() as receiver:
        hooks = tmp_path / "hooks.yaml"
        hooks.write_text(
            json.dumps({"webhooks": [{"url": receiver.url, "secret": "s" * 32, "events": ["action.cancelled"]}]})
        )
        app: InProcessServer = make_client(policy=POLICY, webhooks=str(hooks))
        agent = app.create_key("agent")
        action = submit(app, agent).json()
        post(app, f"/v1/actions/{action['id']}/cancel", agent, {"reason": "gave up"})
        [delivery] = eventually(lambda: receiver.of_type("action.cancelled"))
        event = delivery.json()
        assert event["action_id"] == action["id"] and event["status"] == "cancelled"
        assert event["action"]["decision_reason"] == "gave up"


# -- default expiry and lapse ----------------------------------------------------------------------------


def test_an_approval_nobody_picks_up_lapses(app: InProcessServer, keys: dict[str, str]) -> None:
    action = submit(app, keys["agent"]).json()
    approved = post(app, f"/v1/actions/{action['id']}/approve", keys["approver"]).json()
    assert approved["status"] == "approved"
    assert approved["approval"]["lapses_at"] is not None and approved["approval"]["picked_up_at"] is None

    app.advance(3599)
    assert get(app, keys["approver"], action["id"])["status"] == "approved"  # an approver's read is no pick-up
    app.advance(2)
    lapsed = get(app, keys["agent"], action["id"])
    assert lapsed["status"] == "cancelled"
    assert lapsed["decided_by"] == "system:lapse"
    assert lapsed["decision_reason"].startswith("Approval lapsed: the agent did not pick it up within 1h")
    assert post(app, f"/v1/actions/{action['id']}/result", keys["agent"], {"success": True}).status_code == 409
    assert [e["event"] for e in events(app, action["id"])][-1] == "action.cancelled"
    audit_is_intact(app)


def test_an_approval_the_agent_picked_up_does_not_lapse(app: InProcessServer, keys: dict[str, str]) -> None:
    action = submit(app, keys["agent"]).json()
    post(app, f"/v1/actions/{action['id']}/approve", keys["approver"])
    app.advance(60)
    seen = get(app, keys["agent"], action["id"])  # the agent reads its approval: picked up
    assert seen["status"] == "approved"
    assert seen["approval"]["picked_up_at"] is not None and seen["approval"]["lapses_at"] is None
    app.advance(5 * 3600)
    assert get(app, keys["agent"], action["id"])["status"] == "approved"
    r = post(app, f"/v1/actions/{action['id']}/result", keys["agent"], {"success": True})
    assert r.status_code == 200 and r.json()["status"] == "succeeded"
    trail = [e["event"] for e in events(app, action["id"])]
    # Five hours on, the agent's read renewed the expired permit of its still-valid approval.
    assert trail == [
        "action.submitted",
        "action.approved",
        "action.picked_up",
        "action.permit_renewed",
        "action.succeeded",
    ]
    audit_is_intact(app)


def test_the_wait_answer_is_a_pick_up(app: InProcessServer, keys: dict[str, str]) -> None:
    action = submit(app, keys["agent"]).json()
    post(app, f"/v1/actions/{action['id']}/approve", keys["approver"])
    waited = app.get(f"/v1/actions/{action['id']}/wait", params={"timeout": 1}, headers=auth(keys["agent"])).json()
    assert waited["status"] == "approved" and waited["approval"]["picked_up_at"] is not None
    app.advance(2 * 3600)
    assert get(app, keys["admin"], action["id"])["status"] == "approved"


def test_never_keeps_an_unused_approval_valid(make_client: Any) -> None:
    app: InProcessServer = make_client(policy=POLICY, approval_lapse=None)
    agent, approver = app.create_key("agent"), app.create_key("approver")
    action = submit(app, agent).json()
    approved = post(app, f"/v1/actions/{action['id']}/approve", approver).json()
    assert approved["approval"]["lapses_at"] is None
    app.advance(30 * 24 * 3600)
    assert get(app, approver, action["id"])["status"] == "approved"


# -- re-attach -------------------------------------------------------------------------------------------


def test_an_identical_retry_reattaches_to_the_held_action(app: InProcessServer, keys: dict[str, str]) -> None:
    first = submit(app, keys["agent"])
    assert first.status_code == 201 and first.json()["reattached"] is False
    again = submit(app, keys["agent"])
    assert again.status_code == 200, again.text
    assert again.json()["reattached"] is True and again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "pending_approval"
    assert count_actions(app) == 1
    assert [e["event"] for e in events(app, first.json()["id"])] == ["action.submitted", "action.reattached"]
    audit_is_intact(app)


def test_a_retry_after_the_approval_gets_the_approval_once(app: InProcessServer, keys: dict[str, str]) -> None:
    action = submit(app, keys["agent"]).json()
    post(app, f"/v1/actions/{action['id']}/approve", keys["approver"], {"reason": "ok"})
    retry = submit(app, keys["agent"])
    assert retry.status_code == 200 and retry.json()["reattached"] is True
    assert retry.json()["id"] == action["id"] and retry.json()["status"] == "approved"
    assert retry.json()["approval"]["picked_up_at"] is not None  # handed over: it no longer lapses
    app.advance(2 * 3600)
    assert post(app, f"/v1/actions/{action['id']}/result", keys["agent"], {"success": True}).status_code == 200
    # After the result, the same call is a new action that needs its own approval.
    fresh = submit(app, keys["agent"])
    assert fresh.status_code == 201 and fresh.json()["id"] != action["id"]
    assert fresh.json()["status"] == "pending_approval"


def test_a_retry_of_an_edited_approval_gets_the_edited_arguments(app: InProcessServer, keys: dict[str, str]) -> None:
    action = submit(app, keys["agent"]).json()
    edited = {"amount": 450, "order": "o-1"}
    r = post(app, f"/v1/actions/{action['id']}/approve", keys["approver"], {"params": edited})
    assert r.status_code == 200 and r.json()["status"] == "approved"
    retry = submit(app, keys["agent"]).json()  # the agent repeats its original call
    assert retry["reattached"] is True and retry["id"] == action["id"]
    assert retry["params"] == edited and retry["request_hash"] != action["request_hash"]
    audit_is_intact(app)


def test_what_is_never_reattached(app: InProcessServer, keys: dict[str, str]) -> None:
    small = {"tool": "refund", "operation": "process", "params": {"amount": 5}}
    a, b = submit(app, keys["agent"], small), submit(app, keys["agent"], small)
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]  # two refunds

    held = submit(app, keys["agent"]).json()
    opted_out = submit(app, keys["agent"], {**HELD, "reattach": False})
    assert opted_out.status_code == 201 and opted_out.json()["id"] != held["id"]
    other_invoice = submit(app, keys["agent"], {**HELD, "params": {"amount": 500, "order": "o-2"}})
    assert other_invoice.status_code == 201 and other_invoice.json()["id"] != held["id"]
    other_context = submit(app, keys["agent"], {**HELD, "context": {"trace": "t-2"}})
    assert other_context.status_code == 201
    # Another key of the same agent may not pick up this key's action (it could not report it).
    sibling = app.create_key("agent", agent_id="billing-bot")
    assert submit(app, sibling).status_code == 201

    denied = submit(app, keys["agent"], {**HELD, "params": {"amount": 700}}).json()
    post(app, f"/v1/actions/{denied['id']}/deny", keys["approver"], {"reason": "no"})
    again = submit(app, keys["agent"], {**HELD, "params": {"amount": 700}})
    assert again.status_code == 201 and again.json()["id"] != denied["id"]

    r = submit(app, keys["agent"], {**HELD, "reattach": "no"})
    assert r.status_code == 422 and "reattach" in json.dumps(r.json()["error"])


def test_an_idempotency_key_is_checked_before_reattach(app: InProcessServer, keys: dict[str, str]) -> None:
    headers = auth(keys["agent"]) | {"Idempotency-Key": "call-1"}
    first = app.post("/v1/actions", json=HELD, headers=headers)
    repeat = app.post("/v1/actions", json=HELD, headers=headers)
    assert first.status_code == 201 and repeat.json()["id"] == first.json()["id"]
    assert repeat.json()["reattached"] is False  # the same request, not a retry picked up
    assert [e["event"] for e in events(app, first.json()["id"])] == ["action.submitted"]


# -- presence --------------------------------------------------------------------------------------------


def test_presence_shows_whether_the_agent_is_still_waiting(app: InProcessServer, keys: dict[str, str]) -> None:
    action = submit(app, keys["agent"]).json()
    assert action["presence"] == {"agent_waiting": False, "agent_seen_at": None}

    # An approver waiting on it is not the agent.
    app.get(f"/v1/actions/{action['id']}/wait", params={"timeout": 0.2}, headers=auth(keys["approver"]))
    assert get(app, keys["approver"], action["id"])["presence"]["agent_seen_at"] is None

    answer: list[dict[str, Any]] = []
    waiter = threading.Thread(
        target=lambda: answer.append(
            app.get(f"/v1/actions/{action['id']}/wait", params={"timeout": 30}, headers=auth(keys["agent"])).json()
        )
    )
    waiter.start()
    eventually(lambda: get(app, keys["approver"], action["id"])["presence"]["agent_waiting"])
    post(app, f"/v1/actions/{action['id']}/approve", keys["approver"])
    waiter.join(30)
    assert answer and answer[0]["status"] == "approved"

    app.advance(31)  # the agent's wait ended over 30 seconds ago
    presence = get(app, keys["approver"], action["id"])["presence"]
    assert presence["agent_waiting"] is False and presence["agent_seen_at"] is not None

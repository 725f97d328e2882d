"""Quorum and approver groups, and separation of duties, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from tests.approvals.support import decide, get, submit
from tests.inprocess import InProcessServer, auth

pytestmark = pytest.mark.backends("sqlite", "postgresql")


@pytest.fixture(scope="module")
def keys(client: InProcessServer) -> dict[str, str]:
    return {
        "agent": client.create_key("agent", agent_id="payments-bot"),
        "lead1": client.create_key("approver", groups=("finance-leads",), name="lead one"),
        "lead2": client.create_key("approver", groups=("finance-leads", "ops"), name="lead two"),
        "lead3": client.create_key("approver", groups=("finance-leads",), name="lead three"),
        "outsider": client.create_key("approver", groups=("ops",), name="outsider"),
        "admin_nogroup": client.create_key("admin", name="admin without groups"),
        "approver": client.create_key("approver", name="plain approver"),
    }


def wire(client: InProcessServer, keys: dict[str, str], amount: int = 25_000) -> dict[str, Any]:
    action = submit(client, keys["agent"], "wire", "send", amount=amount, to="ACME")
    assert action["status"] == "pending_approval"
    assert action["approval"]["quorum"] == 2 and action["approval"]["approvers"] == ["finance-leads"]
    return action


def test_quorum_of_two_needs_two_distinct_members(client: InProcessServer, keys: dict[str, str]) -> None:
    action = wire(client, keys)
    first = decide(client, keys["lead1"], action["id"], reason="invoice matches")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "pending_approval"
    [vote] = body["approvals"]
    assert "lead one" in vote["approver"] and vote["approve"] and vote["reason"] == "invoice matches"
    assert vote["counts"] is True and vote["request_hash"] == action["request_hash"]

    second = decide(client, keys["lead2"], action["id"], reason="confirmed by phone")
    assert second.status_code == 200, second.text
    done = second.json()
    assert done["status"] == "approved"
    assert [("lead one" in a["approver"], "lead two" in a["approver"]) for a in done["approvals"]] == [
        (True, False),
        (False, True),
    ]
    assert "lead two" in done["decided_by"] and done["decision_reason"] == "confirmed by phone"


def test_the_same_approver_twice_counts_once(client: InProcessServer, keys: dict[str, str]) -> None:
    action = wire(client, keys)
    assert decide(client, keys["lead1"], action["id"]).status_code == 200
    again = decide(client, keys["lead1"], action["id"], reason="really sure")
    assert again.status_code == 409 and "already decided" in again.json()["detail"]
    # Through the token form too: still one vote.
    token = get(client, keys["lead2"], action["id"])["approval_token"]
    r = client.post(
        f"/v1/actions/{action['id']}/approval",
        json={"token": token, "approve": True},
        headers=auth(keys["lead1"]),
    )
    assert r.status_code == 409
    after = get(client, keys["lead1"], action["id"])
    assert after["status"] == "pending_approval" and len(after["approvals"]) == 1


def test_only_group_members_may_decide(client: InProcessServer, keys: dict[str, str]) -> None:
    action = wire(client, keys)
    for who in ("outsider", "admin_nogroup", "approver"):
        for verb in ("approve", "deny"):
            r = decide(client, keys[who], action["id"], verb, reason="x")
            assert r.status_code == 403, (who, verb, r.text)
            assert r.json()["error"]["field"] == "approvers" and "finance-leads" in r.json()["detail"]
    after = get(client, keys["lead1"], action["id"])
    assert after["status"] == "pending_approval" and after["approvals"] == []


def test_a_single_deny_denies(client: InProcessServer, keys: dict[str, str]) -> None:
    action = wire(client, keys)
    assert decide(client, keys["lead1"], action["id"], reason="ok").status_code == 200
    r = decide(client, keys["lead2"], action["id"], "deny", reason="wrong account")
    assert r.status_code == 200 and r.json()["status"] == "denied"
    assert r.json()["reason"] == "wrong account"
    late = decide(client, keys["lead3"], action["id"], reason="ok")
    assert late.status_code == 409 and late.json()["error"]["status"] == "denied"


def test_concurrent_votes_both_count(client: InProcessServer, keys: dict[str, str]) -> None:
    for _ in range(3):
        action = wire(client, keys)
        results: dict[str, httpx.Response] = {}
        barrier = threading.Barrier(2)

        def vote(who: str, a: dict[str, Any], barrier: threading.Barrier, results: dict[str, httpx.Response]) -> None:
            barrier.wait()
            results[who] = decide(client, keys[who], a["id"], reason=who)

        threads = [threading.Thread(target=vote, args=(w, action, barrier, results)) for w in ("lead1", "lead2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {w: r.status_code for w, r in results.items()} == {"lead1": 200, "lead2": 200}
        final = get(client, keys["lead3"], action["id"])
        assert final["status"] == "approved" and len(final["approvals"]) == 2


# -- separation of duties ----------------------------------------------------------------
def test_no_identity_can_approve_what_it_submitted(client: InProcessServer, keys: dict[str, str]) -> None:
    # An approver key may submit, but then it cannot decide its own action, in any form.
    mine = submit(client, keys["approver"], "refund", "process", amount=500)
    assert mine["status"] == "pending_approval"
    for verb in ("approve", "deny"):
        r = decide(client, keys["approver"], mine["id"], verb, reason="self")
        assert r.status_code == 403 and "submitted" in r.json()["detail"]
    r = client.post(
        f"/v1/actions/{mine['id']}/approval",
        json={"token": mine["approval_token"], "approve": True},
        headers=auth(keys["approver"]),
    )
    assert r.status_code == 403
    assert get(client, keys["approver"], mine["id"])["status"] == "pending_approval"


def test_an_approver_key_bound_to_the_agent_cannot_approve_it(client: InProcessServer, keys: dict[str, str]) -> None:
    twin = client.create_key("approver", agent_id="payments-bot", groups=("finance-leads",))
    action = wire(client, keys)
    r = decide(client, twin, action["id"], reason="it is me")
    assert r.status_code == 403 and "submitted" in r.json()["detail"]


def test_agent_keys_can_never_decide(client: InProcessServer, keys: dict[str, str]) -> None:
    action = submit(client, keys["agent"], "refund", "process", amount=500)
    other_agent = client.create_key("agent")
    for key in (keys["agent"], other_agent):
        for verb in ("approve", "deny"):
            r = decide(client, key, action["id"], verb, reason="agent")
            assert r.status_code in (403, 404), r.text  # another agent does not even see it
    assert get(client, keys["approver"], action["id"])["status"] == "pending_approval"


def test_approvals_are_recorded_with_identity_and_reason(client: InProcessServer, keys: dict[str, str]) -> None:
    action = wire(client, keys)
    decide(client, keys["lead1"], action["id"], reason="first look")
    decide(client, keys["lead3"], action["id"], reason="second look")
    r = client.get(f"/v1/actions/{action['id']}/events", headers=auth(keys["lead1"]))
    records = [e for e in r.json()["events"] if e["event"] in ("action.approval_recorded", "action.approved")]
    assert [(("lead one" in e["actor"]), e["data"]["reason"]) for e in records] == [
        (True, "first look"),
        (False, "second look"),
    ]
    assert "lead three" in records[1]["actor"]
    assert records[0]["data"]["approvals"] == 1 and records[1]["data"]["approvals"] == 2
    assert all(e["data"]["request_hash"] == action["request_hash"] for e in records)

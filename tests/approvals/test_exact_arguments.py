"""Exact-argument approvals and approve-with-changes, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from faramesh.canonical import request_hash
from faramesh.sdk.client import ExecutionGovernorClient
from faramesh.sdk.errors import FarameshAPIError
from tests.approvals.support import decide, get, submit
from tests.conftest import ServerProcess, auth

pytestmark = pytest.mark.backends("sqlite", "postgresql")


@pytest.fixture(scope="module")
def keys(srv: ServerProcess) -> dict[str, str]:
    return {
        "agent": srv.create_key("agent", agent_id="billing-bot"),
        "approver": srv.create_key("approver", name="reviewer"),
        "approver2": srv.create_key("approver", name="second reviewer"),
        "lead1": srv.create_key("approver", groups=("finance-leads",), name="lead one"),
        "lead2": srv.create_key("approver", groups=("finance-leads",), name="lead two"),
    }


def events(srv: ServerProcess, key: str, action_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{srv.url}/v1/actions/{action_id}/events", headers=auth(key))
    assert r.status_code == 200
    rows: list[dict[str, Any]] = r.json()["events"]
    return rows


# -- the stored hash and approvals bound to it ----------------------------------------
def test_action_carries_the_hash_of_its_canonical_arguments(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=150.0, customer_id="cus_1", note="café")
    expected = request_hash(
        agent_id="billing-bot",
        tool="refund",
        operation="process",
        params={"amount": 150, "customer_id": "cus_1", "note": "café"},
        context={},
    )
    assert action["request_hash"] == expected


def test_approval_is_bound_to_the_hash_the_approver_saw(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=500)
    stale = "0" * 64
    r = decide(srv, keys["approver"], action["id"], request_hash=stale)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "request_hash_mismatch" and r.json()["error"]["field"] == "request_hash"
    assert get(srv, keys["approver"], action["id"])["status"] == "pending_approval"
    r = decide(srv, keys["approver"], action["id"], request_hash=action["request_hash"])
    assert r.status_code == 200 and r.json()["status"] == "approved"
    [vote] = r.json()["approvals"]
    assert vote["request_hash"] == action["request_hash"] and vote["counts"]


def test_a_deny_can_be_bound_to_the_hash_too(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=500)
    url = f"{srv.url}/v1/actions/{action['id']}/deny"
    r = httpx.post(url, json={"reason": "no", "request_hash": "0" * 64}, headers=auth(keys["approver"]))
    assert r.status_code == 409 and r.json()["error"]["code"] == "request_hash_mismatch"
    assert get(srv, keys["approver"], action["id"])["status"] == "pending_approval"
    r = httpx.post(url, json={"reason": "no", "request_hash": action["request_hash"]}, headers=auth(keys["approver"]))
    assert r.status_code == 200 and r.json()["status"] == "denied"


def test_approval_token_is_single_use(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=500)
    token = get(srv, keys["approver"], action["id"])["approval_token"]
    url = f"{srv.url}/v1/actions/{action['id']}/approval"
    first = httpx.post(url, json={"token": token, "approve": True}, headers=auth(keys["approver"]))
    assert first.status_code == 200 and first.json()["status"] == "approved"
    assert "approval_token" not in first.json()
    again = httpx.post(url, json={"token": token, "approve": True}, headers=auth(keys["approver2"]))
    assert again.status_code == 409


def test_result_for_an_approved_action_is_accepted_once(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=500)
    assert decide(srv, keys["approver"], action["id"]).status_code == 200
    url = f"{srv.url}/v1/actions/{action['id']}/result"
    outcomes: list[int] = []

    def report() -> None:
        outcomes.append(httpx.post(url, json={"success": True}, headers=auth(keys["agent"])).status_code)

    threads = [threading.Thread(target=report) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [200, 409, 409, 409]
    assert get(srv, keys["agent"], action["id"])["status"] == "succeeded"


# -- approve with changes ---------------------------------------------------------------
def test_approve_with_changes_is_re_evaluated_and_reaches_the_agent(srv: ServerProcess, keys: dict[str, str]) -> None:
    agent = ExecutionGovernorClient(srv.url, keys["agent"])
    approver = ExecutionGovernorClient(srv.url, keys["approver"])
    action = agent.submit_action("refund", "process", {"amount": 500, "customer_id": "cus_7"})
    assert action["status"] == "pending_approval"
    got: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: got.append(agent.wait_for_decision(action["id"], timeout=30)))
    waiter.start()

    edited = {"amount": 80, "customer_id": "cus_7"}
    approved = approver.approve_action(action["id"], reason="partial refund only", params=edited)
    waiter.join(30)

    assert approved["status"] == "approved"
    assert approved["params"] == edited and approved["original_params"] == {"amount": 500, "customer_id": "cus_7"}
    new_hash = request_hash(agent_id="billing-bot", tool="refund", operation="process", params=edited, context={})
    assert approved["request_hash"] == new_hash != action["request_hash"]
    # The agent receives the edited arguments from wait_for_decision.
    [decided] = got
    assert decided["status"] == "approved" and decided["params"] == edited
    assert decided["original_params"]["amount"] == 500
    # The audit keeps both versions and the re-evaluation.
    [record] = [e for e in events(srv, keys["agent"], action["id"]) if e["event"] == "action.approved"]
    assert record["data"]["params"] == edited
    assert record["data"]["original_params"] == {"amount": 500, "customer_id": "cus_7"}
    assert record["data"]["original_request_hash"] == action["request_hash"]
    assert record["data"]["request_hash"] == new_hash
    assert record["data"]["reevaluation"] == {
        "decision": "allow",
        "rule_id": "small-refunds",
        "reason": "Small refunds allowed",
    }
    # The agent executes with what was approved and reports once.
    assert agent.report_result(action["id"], success=True, result={"refunded": 80})["status"] == "succeeded"


def test_edited_params_the_policy_denies_are_refused_and_nothing_changes(
    srv: ServerProcess, keys: dict[str, str]
) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=500)
    r = decide(srv, keys["approver"], action["id"], params={"amount": 20_000})
    assert r.status_code == 422
    body = r.json()
    assert body["error"]["field"] == "params" and "Refunds over 10000 are never allowed" in body["detail"]
    after = get(srv, keys["approver"], action["id"])
    assert after["status"] == "pending_approval" and after["params"] == {"amount": 500}
    assert after["request_hash"] == action["request_hash"] and after["original_params"] is None
    assert after["approvals"] == []
    assert [e["event"] for e in events(srv, keys["approver"], action["id"])] == ["action.submitted"]


def test_edited_params_under_a_stricter_rule_are_refused(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=500)
    r = decide(srv, keys["approver"], action["id"], params={"amount": 6000})
    assert r.status_code == 422 and "huge-refunds" in r.json()["detail"]
    assert get(srv, keys["approver"], action["id"])["params"] == {"amount": 500}


def test_edited_params_must_be_a_json_object(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=500)
    for bad in ([1, 2], "amount=5", 7):
        r = decide(srv, keys["approver"], action["id"], params=bad)
        assert r.status_code == 422 and r.json()["error"]["field"] == "params", r.text


def test_same_params_are_a_plain_approval(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=500)
    r = decide(srv, keys["approver"], action["id"], params={"amount": 500.0})
    assert r.status_code == 200 and r.json()["status"] == "approved"
    assert r.json()["original_params"] is None and r.json()["request_hash"] == action["request_hash"]


def test_an_edit_in_a_quorum_resets_the_other_votes(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "wire", "send", amount=25_000, to="ACME")
    assert decide(srv, keys["lead1"], action["id"], reason="as submitted").status_code == 200
    old_token = get(srv, keys["lead2"], action["id"])["approval_token"]

    r = decide(srv, keys["lead2"], action["id"], reason="lower it", params={"amount": 20_000, "to": "ACME"})
    assert r.status_code == 200, r.text
    edited = r.json()
    # lead1 approved different arguments: that vote no longer counts.
    assert edited["status"] == "pending_approval"
    assert [(a["approver"].split("(")[-1], a["counts"]) for a in edited["approvals"]] == [
        ("lead one)", False),
        ("lead two)", True),
    ]
    assert edited["params"]["amount"] == 20_000 and edited["original_params"]["amount"] == 25_000
    # A token fetched for the old arguments cannot approve the new ones.
    stale = httpx.post(
        f"{srv.url}/v1/actions/{action['id']}/approval",
        json={"token": old_token, "approve": True},
        headers=auth(keys["lead1"]),
    )
    assert stale.status_code == 403
    # Nor can an approval bound to the old hash.
    r = decide(srv, keys["lead1"], action["id"], request_hash=action["request_hash"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "request_hash_mismatch"
    # lead2 cannot count twice for the edited arguments.
    assert decide(srv, keys["lead2"], action["id"]).status_code == 409
    # lead1 agrees to the edited arguments: now two distinct approvers back them.
    final = decide(srv, keys["lead1"], action["id"], reason="fine, lower", request_hash=edited["request_hash"])
    assert final.status_code == 200 and final.json()["status"] == "approved"
    assert final.json()["params"] == {"amount": 20_000, "to": "ACME"}
    assert sum(a["counts"] for a in final.json()["approvals"]) == 2


def test_sdk_error_names_params_when_the_edit_is_refused(srv: ServerProcess, keys: dict[str, str]) -> None:
    agent = ExecutionGovernorClient(srv.url, keys["agent"])
    approver = ExecutionGovernorClient(srv.url, keys["approver"])
    action = agent.submit_action("refund", "process", {"amount": 500}, reattach=False)
    with pytest.raises(FarameshAPIError) as info:
        approver.approve_action(action["id"], params={"amount": 50_000})
    assert info.value.status_code == 422 and "never allowed" in info.value.message

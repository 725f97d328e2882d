"""Action lifecycle over HTTP against the app in-process: decisions, approvals, results, roles, races."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from tests.inprocess import InProcessServer, auth


def submit(client: InProcessServer, key: str, amount: Any = 150, **extra: Any) -> httpx.Response:
    body = {"tool": "refund", "operation": "process", "params": {"amount": amount}, "reattach": False} | extra
    return client.post("/v1/actions", json=body, headers=auth(key))


@pytest.fixture(scope="module")
def keys(client: InProcessServer) -> dict[str, str]:
    return {
        "agent": client.create_key("agent"),
        "agent2": client.create_key("agent"),
        "bound": client.create_key("agent", agent_id="billing-bot"),
        "approver": client.create_key("approver"),
        "approver2": client.create_key("approver"),
    }


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["error"]["message"] == body["detail"]
    if code:
        assert body["error"]["code"] == code
    return body


def test_submit_returns_full_action(client: InProcessServer, keys: dict[str, str]) -> None:
    r = submit(client, keys["agent"], 50, context={"agent_id": "billing-bot"})
    assert r.status_code == 201
    a = r.json()
    for field in (
        "id",
        "status",
        "decision",
        "reason",
        "risk_level",
        "rule_id",
        "policy_hash",
        "request_hash",
        "tool",
        "operation",
        "params",
        "context",
        "agent_id",
        "created_at",
        "updated_at",
    ):
        assert field in a, field
    assert a["status"] == "allowed" and a["decision"] == "allow" and a["rule_id"] == "rules[1]"
    assert a["agent_id"] == "billing-bot"
    assert len(a["request_hash"]) == 64 and len(a["policy_hash"]) == 64


def test_policy_denial_is_a_normal_201(client: InProcessServer, keys: dict[str, str]) -> None:
    r = client.post(
        "/v1/actions",
        headers=auth(keys["agent"]),
        json={"tool": "user_management", "operation": "delete", "params": {"user_id": "u1"}},
    )
    assert r.status_code == 201
    assert r.json()["status"] == "denied" and r.json()["reason"] == "Agents may not delete users"


def test_no_matching_rule_is_denied_by_default(client: InProcessServer, keys: dict[str, str]) -> None:
    r = client.post(
        "/v1/actions",
        headers=auth(keys["agent"]),
        json={"tool": "email", "operation": "send", "params": {}},
    )
    a = r.json()
    assert r.status_code == 201 and a["status"] == "denied" and a["rule_id"] is None
    assert "default" in a["reason"].lower()


@pytest.mark.parametrize("amount", [None, "150", True, [150], {"v": 1}])
def test_missing_or_non_numeric_amount_is_never_allowed(
    client: InProcessServer, keys: dict[str, str], amount: Any
) -> None:
    params = {} if amount is None else {"amount": amount}
    r = client.post(
        "/v1/actions",
        headers=auth(keys["agent"]),
        json={"tool": "refund", "operation": "process", "params": params},
    )
    assert r.status_code == 201
    assert r.json()["status"] == "denied"


def test_result_on_pending_action_is_409(client: InProcessServer, keys: dict[str, str]) -> None:
    a = submit(client, keys["agent"]).json()
    assert a["status"] == "pending_approval"
    r = client.post(f"/v1/actions/{a['id']}/result", json={"success": True}, headers=auth(keys["agent"]))
    body = assert_error(r, 409, "invalid_transition")
    assert body["error"]["status"] == "pending_approval"
    assert client.get(f"/v1/actions/{a['id']}", headers=auth(keys["agent"])).json()["status"] == "pending_approval"


def test_agent_key_cannot_approve_or_deny(client: InProcessServer, keys: dict[str, str]) -> None:
    a = submit(client, keys["agent"]).json()
    for verb in ("approve", "deny"):
        r = client.post(f"/v1/actions/{a['id']}/{verb}", json={}, headers=auth(keys["agent2"]))
        assert_error(r, 403, "forbidden")
    # Even holding the approval token (the original server's hole), an agent cannot approve.
    token = client.get(f"/v1/actions/{a['id']}", headers=auth(keys["approver"])).json()["approval_token"]
    r = client.post(
        f"/v1/actions/{a['id']}/approval",
        json={"token": token, "approve": True},
        headers=auth(keys["agent"]),
    )
    assert_error(r, 403)
    assert client.get(f"/v1/actions/{a['id']}", headers=auth(keys["agent"])).json()["status"] == "pending_approval"


def test_approval_token_only_for_deciders(client: InProcessServer, keys: dict[str, str]) -> None:
    a = submit(client, keys["agent"]).json()
    assert "approval_token" not in a
    assert "approval_token" not in client.get(f"/v1/actions/{a['id']}", headers=auth(keys["agent"])).json()
    seen = client.get(f"/v1/actions/{a['id']}", headers=auth(keys["approver"])).json()
    assert seen["approval_token"]


def test_second_approve_is_409_and_token_is_single_use(client: InProcessServer, keys: dict[str, str]) -> None:
    a = submit(client, keys["agent"]).json()
    token = client.get(f"/v1/actions/{a['id']}", headers=auth(keys["approver"])).json()["approval_token"]
    r = client.post(
        f"/v1/actions/{a['id']}/approval",
        json={"token": token, "approve": True, "reason": "ok"},
        headers=auth(keys["approver"]),
    )
    assert r.status_code == 200 and r.json()["status"] == "approved"
    r2 = client.post(f"/v1/actions/{a['id']}/approve", json={}, headers=auth(keys["approver2"]))
    assert assert_error(r2, 409)["error"]["status"] == "approved"
    r3 = client.post(
        f"/v1/actions/{a['id']}/approval",
        json={"token": token, "approve": True},
        headers=auth(keys["approver2"]),
    )
    assert_error(r3, 409)


def test_wrong_token_is_refused(client: InProcessServer, keys: dict[str, str]) -> None:
    a = submit(client, keys["agent"]).json()
    r = client.post(
        f"/v1/actions/{a['id']}/approval",
        json={"token": "nope", "approve": True},
        headers=auth(keys["approver"]),
    )
    assert_error(r, 403)


def test_result_only_from_submitter_and_only_once(client: InProcessServer, keys: dict[str, str]) -> None:
    a = submit(client, keys["agent"], 20).json()
    assert a["status"] == "allowed"
    other = client.post(f"/v1/actions/{a['id']}/result", json={"success": True}, headers=auth(keys["approver"]))
    assert_error(other, 403)
    hidden = client.post(f"/v1/actions/{a['id']}/result", json={"success": True}, headers=auth(keys["agent2"]))
    assert_error(hidden, 404)
    ok = client.post(
        f"/v1/actions/{a['id']}/result",
        json={"success": False, "error": "card declined"},
        headers=auth(keys["agent"]),
    )
    assert ok.status_code == 200 and ok.json()["status"] == "failed" and ok.json()["error"] == "card declined"
    again = client.post(f"/v1/actions/{a['id']}/result", json={"success": True}, headers=auth(keys["agent"]))
    assert assert_error(again, 409)["error"]["status"] == "failed"


def test_result_after_deny_is_409(client: InProcessServer, keys: dict[str, str]) -> None:
    a = submit(client, keys["agent"]).json()
    d = client.post(f"/v1/actions/{a['id']}/deny", json={"reason": "too much"}, headers=auth(keys["approver"]))
    assert d.json()["status"] == "denied" and d.json()["reason"] == "too much"
    r = client.post(f"/v1/actions/{a['id']}/result", json={"success": True}, headers=auth(keys["agent"]))
    assert_error(r, 409)


@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer", "Basic abc", "Bearer fm_" + "x" * 43])
def test_bad_key_is_401(client: InProcessServer, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    r = client.post(
        "/v1/actions",
        json={"tool": "refund", "operation": "process", "params": {"amount": 1}},
        headers=headers,
    )
    assert_error(r, 401, "unauthorized")
    assert client.get("/v1/actions", headers=headers).status_code == 401


def test_revoked_key_is_401(client: InProcessServer) -> None:
    key = client.create_key("agent")
    assert submit(client, key, 10).status_code == 201
    keys_list = client.get("/v1/keys", headers=auth(client.admin_key or "")).json()["keys"]
    key_id = next(k["id"] for k in keys_list if key.startswith(k["prefix"]) and not k["revoked"])
    assert client.delete(f"/v1/keys/{key_id}", headers=auth(client.admin_key or "")).status_code == 200
    assert_error(submit(client, key, 10), 401)


def test_bound_key_refuses_other_agent_id(client: InProcessServer, keys: dict[str, str]) -> None:
    ok = submit(client, keys["bound"], 10, context={"agent_id": "billing-bot"})
    assert ok.status_code == 201 and ok.json()["agent_id"] == "billing-bot"
    implicit = submit(client, keys["bound"], 10)
    assert implicit.json()["agent_id"] == "billing-bot"
    assert_error(submit(client, keys["bound"], 10, context={"agent_id": "admin-bot"}), 403)
    assert_error(submit(client, keys["bound"], 10, agent_id="admin-bot"), 403)


def test_agent_sees_only_its_own_actions(client: InProcessServer, keys: dict[str, str]) -> None:
    mine = submit(client, keys["agent2"], 5).json()
    theirs = submit(client, keys["agent"], 6).json()
    listed = client.get("/v1/actions?limit=500", headers=auth(keys["agent2"])).json()["actions"]
    ids = {a["id"] for a in listed}
    assert mine["id"] in ids and theirs["id"] not in ids
    assert_error(client.get(f"/v1/actions/{theirs['id']}", headers=auth(keys["agent2"])), 404)


def test_submitter_cannot_approve_its_own_action(client: InProcessServer) -> None:
    admin = client.admin_key or ""
    a = submit(client, admin).json()
    assert_error(client.post(f"/v1/actions/{a['id']}/approve", json={}, headers=auth(admin)), 403)


def test_unknown_action_is_404(client: InProcessServer, keys: dict[str, str]) -> None:
    for path in ("/v1/actions/does-not-exist", "/v1/actions/does-not-exist/wait?timeout=0"):
        assert_error(client.get(path, headers=auth(keys["approver"])), 404, "not_found")
    assert_error(client.post("/v1/actions/nope/approve", json={}, headers=auth(keys["approver"])), 404)


def test_list_filters_and_cursor_paging(client: InProcessServer, keys: dict[str, str]) -> None:
    key = client.create_key("agent")
    ids = [submit(client, key, 1 + i).json()["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/actions", params=params, headers=auth(key)).json()
        seen += [a["id"] for a in page["actions"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    allowed = client.get("/v1/actions", params={"status": "allowed", "tool": "refund"}, headers=auth(key)).json()
    assert {a["status"] for a in allowed["actions"]} == {"allowed"}
    assert_error(client.get("/v1/actions", params={"status": "bogus"}, headers=auth(key)), 422)


def test_idempotency_key(client: InProcessServer, keys: dict[str, str]) -> None:
    headers = auth(keys["agent"]) | {"Idempotency-Key": "order-991"}
    body = {"tool": "refund", "operation": "process", "params": {"amount": 30}}
    first = client.post("/v1/actions", json=body, headers=headers)
    second = client.post("/v1/actions", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    other = client.post("/v1/actions", json=body | {"params": {"amount": 31}}, headers=headers)
    assert_error(other, 409, "idempotency_mismatch")


def test_racing_approve_and_deny_have_one_winner(client: InProcessServer, keys: dict[str, str]) -> None:
    deciders = [client.create_key("approver") for _ in range(8)]
    for _ in range(5):
        a = submit(client, keys["agent"]).json()
        results: list[tuple[str, int, dict[str, Any]]] = []
        barrier = threading.Barrier(len(deciders))

        def decide(
            i: int,
            key: str,
            action_id: str = a["id"],
            barrier: threading.Barrier = barrier,
            results: list[tuple[str, int, dict[str, Any]]] = results,
        ) -> None:
            verb = "approve" if i % 2 else "deny"
            barrier.wait()
            r = client.post(f"/v1/actions/{action_id}/{verb}", json={"reason": verb}, headers=auth(key))
            results.append((verb, r.status_code, r.json()))

        threads = [threading.Thread(target=decide, args=(i, k)) for i, k in enumerate(deciders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [r for r in results if r[1] == 200]
        losers = [r for r in results if r[1] != 200]
        assert len(winners) == 1, results
        assert all(code == 409 for _, code, _ in losers)
        final = client.get(f"/v1/actions/{a['id']}", headers=auth(keys["approver"])).json()
        assert final["status"] == ("approved" if winners[0][0] == "approve" else "denied")
        assert {body["error"]["status"] for _, _, body in losers} == {final["status"]}
        events = client.get(f"/v1/actions/{a['id']}/events", headers=auth(keys["approver"])).json()["events"]
        assert [e["event"] for e in events] == ["action.submitted", f"action.{final['status']}"]


def test_openapi_health_ready(client: InProcessServer) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/actions" in spec["paths"] and "/v1/actions/{action_id}/result" in spec["paths"]
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").json()["status"] == "ready"


def test_list_by_id_prefix_treats_wildcards_literally(client: InProcessServer) -> None:
    key = client.create_key("agent")
    ids = [submit(client, key, 3).json()["id"] for _ in range(3)]
    target = ids[1]
    for prefix in (target[:8], target):
        found = client.get("/v1/actions", params={"id_prefix": prefix}, headers=auth(key)).json()
        assert target in {a["id"] for a in found["actions"]}
        assert all(a["id"].startswith(prefix) for a in found["actions"])
    for wildcard in ("%", "_", target[:4] + "%"):
        found = client.get("/v1/actions", params={"id_prefix": wildcard}, headers=auth(key)).json()
        assert found["actions"] == []

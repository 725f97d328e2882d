"""Lifecycle races on the real server with many threads: exactly one transition
wins, every loser gets 409 with the status it found, and the audit trail agrees."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.adversarial.support import assert_error
from tests.conftest import ServerProcess, auth, faramesh_cmd

POLICY = """\
rules:
  - id: quick-expiry
    match: {tool: refund, operation: process, amount_gt: 1000}
    require_approval: true
    approval: {timeout: 1s}
    reason: Very large refunds expire quickly
  - id: two-approvers
    match: {tool: payout, operation: send}
    require_approval: true
    approval: {quorum: 2}
    reason: Payouts need two approvers
  - id: large
    match: {tool: refund, operation: process, amount_gt: 100}
    require_approval: true
    reason: Large refunds need approval
  - id: small
    match: {tool: refund, operation: process, amount_lte: 100}
    allow: true
    reason: Small refunds allowed
"""

THREADS = 8
ROUNDS = 6


@pytest.fixture(scope="module")
def race_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("races")
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    srv = ServerProcess(f"sqlite:///{tmp / 'faramesh.db'}", policy, cwd=tmp, extra_args=("--rate-limit", "off"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def rk(race_server: ServerProcess) -> dict[str, Any]:
    return {
        "agent": race_server.create_key("agent"),
        "approvers": [race_server.create_key("approver") for _ in range(THREADS)],
    }


def submit(
    srv: ServerProcess, key: str, amount: int, tool: str = "refund", operation: str = "process"
) -> dict[str, Any]:
    r = httpx.post(
        srv.url + "/v1/actions",
        json={"tool": tool, "operation": operation, "params": {"amount": amount}, "reattach": False},
        headers=auth(key),
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def together(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the calls on their own threads, released at the same moment."""
    barrier = threading.Barrier(len(calls))
    out: list[httpx.Response | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        out[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in out), "a request hung"
    return [r for r in out if r is not None]


def post(srv: ServerProcess, path: str, key: str, body: dict[str, Any]) -> Callable[[], httpx.Response]:
    return lambda: httpx.post(srv.url + path, json=body, headers=auth(key), timeout=60)


def trail(srv: ServerProcess, key: str, action_id: str) -> list[str]:
    events = httpx.get(f"{srv.url}/v1/actions/{action_id}/events", headers=auth(key)).json()["events"]
    return [e["event"] for e in events]


def current(srv: ServerProcess, key: str, action_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{srv.url}/v1/actions/{action_id}", headers=auth(key)).json())


def split(responses: list[httpx.Response]) -> tuple[list[httpx.Response], list[httpx.Response]]:
    winners = [r for r in responses if r.status_code == 200]
    losers = [r for r in responses if r.status_code != 200]
    for r in losers:
        assert_error(r, 409, "invalid_transition")
    return winners, losers


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_approve_vs_deny(race_server: ServerProcess, rk: dict[str, Any], round_: int) -> None:
    a = submit(race_server, rk["agent"], 500)
    verbs = ["approve" if i % 2 else "deny" for i in range(THREADS)]
    responses = together(
        [
            post(race_server, f"/v1/actions/{a['id']}/{verb}", key, {"reason": verb})
            for verb, key in zip(verbs, rk["approvers"], strict=True)
        ]
    )
    winners, losers = split(responses)
    assert len(winners) == 1, [r.text for r in responses]
    final = current(race_server, rk["approvers"][0], a["id"])
    assert final["status"] == winners[0].json()["status"] in ("approved", "denied")
    assert {r.json()["error"]["status"] for r in losers} == {final["status"]}
    assert trail(race_server, rk["approvers"][0], a["id"]) == [
        "action.submitted",
        "action.approved" if final["status"] == "approved" else "action.denied",
    ]
    assert len(final["approvals"]) == 1 and final["version"] == 2


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_results(race_server: ServerProcess, rk: dict[str, Any], round_: int) -> None:
    a = submit(race_server, rk["agent"], 5)
    assert a["status"] == "allowed"
    bodies = [{"success": i % 2 == 0, "result": {"n": i}, "error": None if i % 2 == 0 else "e"} for i in range(THREADS)]
    responses = together([post(race_server, f"/v1/actions/{a['id']}/result", rk["agent"], b) for b in bodies])
    winners, losers = split(responses)
    assert len(winners) == 1
    final = current(race_server, rk["agent"], a["id"])
    assert final["status"] == winners[0].json()["status"] in ("succeeded", "failed")
    assert final["result"] == winners[0].json()["result"]
    assert {r.json()["error"]["status"] for r in losers} == {final["status"]}
    assert trail(race_server, rk["approvers"][0], a["id"]) == ["action.submitted", f"action.{final['status']}"]


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_deny_vs_result_vs_approve(race_server: ServerProcess, rk: dict[str, Any], round_: int) -> None:
    """A pending action hit at once by approvals, denials and results: one decision
    wins; a result can only land after an approval, and at most once."""
    a = submit(race_server, rk["agent"], 500)
    calls = []
    kinds = []
    for i in range(THREADS):
        kind = ("approve", "deny", "result")[i % 3]
        kinds.append(kind)
        if kind == "result":
            calls.append(post(race_server, f"/v1/actions/{a['id']}/result", rk["agent"], {"success": True}))
        else:
            calls.append(post(race_server, f"/v1/actions/{a['id']}/{kind}", rk["approvers"][i], {}))
    responses = together(calls)
    for r in responses:
        assert r.status_code in (200, 409), r.text
    decided = [k for k, r in zip(kinds, responses, strict=True) if r.status_code == 200 and k != "result"]
    results = [r for k, r in zip(kinds, responses, strict=True) if r.status_code == 200 and k == "result"]
    assert len(decided) == 1
    final = current(race_server, rk["approvers"][0], a["id"])
    events = trail(race_server, rk["approvers"][0], a["id"])
    if decided[0] == "deny":
        assert not results and final["status"] == "denied"
        assert events == ["action.submitted", "action.denied"]
    else:
        assert len(results) <= 1
        assert final["status"] == ("succeeded" if results else "approved")
        assert events == ["action.submitted", "action.approved"] + (["action.succeeded"] if results else [])
    # Every 409 names a status the action really had.
    had = {"pending_approval", "approved", "denied", "succeeded"}
    for r in responses:
        if r.status_code == 409:
            assert r.json()["error"]["status"] in had


@pytest.mark.parametrize("offset", [-0.15, -0.05, 0.0, 0.02, 0.05, 0.1])
def test_approve_vs_expiry(race_server: ServerProcess, rk: dict[str, Any], offset: float) -> None:
    """Approvals fired around the moment the 1s approval window closes: either an
    approval wins and the action never expires, or it expires and every approval
    gets 409 denied. Never both."""
    a = submit(race_server, rk["agent"], 5000)
    assert a["status"] == "pending_approval" and a["rule_id"] == "quick-expiry"
    time.sleep(1.0 + offset)
    responses = together([post(race_server, f"/v1/actions/{a['id']}/approve", key, {}) for key in rk["approvers"][:4]])
    winners, losers = split(responses)
    # Let the sweeper run past the deadline whatever happened.
    time.sleep(1.2)
    final = current(race_server, rk["approvers"][0], a["id"])
    events = trail(race_server, rk["approvers"][0], a["id"])
    if winners:
        assert len(winners) == 1
        assert final["status"] == "approved"
        assert events == ["action.submitted", "action.approved"]
        assert {r.json()["error"]["status"] for r in losers} <= {"approved"}
    else:
        assert final["status"] == "denied" and "expired" in final["reason"].lower()
        assert events == ["action.submitted", "action.expired"]
        assert {r.json()["error"]["status"] for r in losers} == {"denied"}


def test_deny_vs_expiry_many_at_once(race_server: ServerProcess, rk: dict[str, Any]) -> None:
    """Many actions expiring together while approvers deny them: each ends with
    exactly one closing event."""
    actions = [submit(race_server, rk["agent"], 5000) for _ in range(THREADS)]
    time.sleep(0.95)
    responses = together(
        [
            post(race_server, f"/v1/actions/{a['id']}/deny", key, {"reason": "no"})
            for a, key in zip(actions, rk["approvers"], strict=True)
        ]
    )
    time.sleep(1.2)
    for a, r in zip(actions, responses, strict=True):
        assert r.status_code in (200, 409)
        events = trail(race_server, rk["approvers"][0], a["id"])
        assert events in (["action.submitted", "action.denied"], ["action.submitted", "action.expired"])
        assert (r.status_code == 200) == (events[-1] == "action.denied")
        assert current(race_server, rk["approvers"][0], a["id"])["status"] == "denied"


@pytest.mark.parametrize("round_", range(3))
def test_quorum_votes_race(race_server: ServerProcess, rk: dict[str, Any], round_: int) -> None:
    """Eight approvers vote at once on an action that needs two: exactly two votes
    count, the action is approved once, and the rest get 409 approved."""
    a = submit(race_server, rk["agent"], 5, tool="payout", operation="send")
    assert a["status"] == "pending_approval"
    responses = together([post(race_server, f"/v1/actions/{a['id']}/approve", k, {}) for k in rk["approvers"]])
    winners, losers = split(responses)
    assert len(winners) == 2, [r.text for r in responses]
    # The first vote's answer is read after it committed, so it may already show the
    # second vote's approval.
    assert "approved" in {r.json()["status"] for r in winners}
    assert {r.json()["error"]["status"] for r in losers} == {"approved"}
    final = current(race_server, rk["approvers"][0], a["id"])
    assert final["status"] == "approved" and len(final["approvals"]) == 2
    assert trail(race_server, rk["approvers"][0], a["id"]) == [
        "action.submitted",
        "action.approval_recorded",
        "action.approved",
    ]


def test_audit_chain_verifies_after_the_races(race_server: ServerProcess) -> None:
    out = subprocess.run(
        faramesh_cmd("audit", "verify", "--json", "--database-url", race_server.database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["ok"] is True

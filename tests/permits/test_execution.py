"""Single use and the outcome ledger: start once, the execution lease and its heartbeat,
`outcome_unknown`, the refused identical retry, and reconcile. On SQLite and PostgreSQL,
the app in-process on a fake clock: leases run out when the test moves the clock."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from faramesh.permit import verify_permit
from faramesh.sdk.client import ExecutionGovernorClient
from faramesh.sdk.errors import ConflictError
from tests.inprocess import InProcessServer
from tests.permits.support import LARGE, SMALL, audit_verify, events, get, keys, post, submit

pytestmark = pytest.mark.backends("sqlite", "postgresql")

LEASE = 600  # the default execution lease, 10m


@pytest.fixture
def app(make_client: Any) -> InProcessServer:
    server: InProcessServer = make_client(rate_limit=None)
    return server


def start(app: InProcessServer, key: str, action_id: str) -> Any:
    return post(app, f"/v1/actions/{action_id}/start", key)


def test_start_takes_the_single_execution_once(app: InProcessServer) -> None:
    k = keys(app)
    action = submit(app, k["agent"], SMALL)
    assert start(app, k["other"], action["id"]).status_code == 404  # another agent does not even see it
    assert start(app, k["approver"], action["id"]).status_code == 403  # people do not run actions
    r = start(app, k["agent"], action["id"])
    assert r.status_code == 200, r.text
    started = r.json()
    assert started["status"] == "executing" and "permit" not in started
    assert started["execution"]["started_at"] is not None and started["execution"]["lease_expires_at"] is not None
    again = start(app, k["agent"], action["id"])
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_transition" and again.json()["error"]["status"] == "executing"
    assert "already started" in again.json()["detail"]
    [record] = [e for e in events(app, action["id"]) if e["event"] == "action.started"]
    assert record["data"]["status"] == "executing" and record["data"]["previous"] == "allowed"
    assert record["data"]["permit_sha256"] is not None
    # The result is accepted from executing, once.
    done = post(app, f"/v1/actions/{action['id']}/result", k["agent"], {"success": True, "result": {"id": "re_1"}})
    assert done.status_code == 200 and done.json()["status"] == "succeeded"
    assert post(app, f"/v1/actions/{action['id']}/result", k["agent"], {"success": True}).status_code == 409
    assert start(app, k["agent"], action["id"]).status_code == 409
    code, output = audit_verify(app.database_url)
    assert code == 0, output


def test_only_allowed_or_approved_actions_start_and_the_seed_flow_still_reports_directly(
    app: InProcessServer,
) -> None:
    k = keys(app)
    held = submit(app, k["agent"], LARGE)
    r = start(app, k["agent"], held["id"])
    assert r.status_code == 409 and r.json()["error"]["status"] == "pending_approval"
    assert post(app, f"/v1/actions/{held['id']}/approve", k["approver"], {"reason": "ok"}).status_code == 200
    assert start(app, k["agent"], held["id"]).json()["status"] == "executing"
    # The seed's flow: a result straight after allowed, no start.
    direct = submit(app, k["agent"], SMALL | {"params": {"amount": 10}})
    r = post(app, f"/v1/actions/{direct['id']}/result", k["agent"], {"success": False, "error": "declined"})
    assert r.status_code == 200 and r.json()["status"] == "failed"
    assert start(app, k["agent"], direct["id"]).status_code == 409


def test_start_racing_itself_from_many_threads_has_exactly_one_winner(app: InProcessServer) -> None:
    k = keys(app)
    for round_ in range(3):
        action = submit(app, k["agent"], SMALL | {"params": {"amount": 20 + round_}})
        barrier = threading.Barrier(16)

        def race(_: int, action_id: str = action["id"], gate: threading.Barrier = barrier) -> int:
            gate.wait()
            return start(app, k["agent"], action_id).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(race, range(16)))
        assert sorted(codes) == [200] + [409] * 15, codes
        assert [e["event"] for e in events(app, action["id"])].count("action.started") == 1
        assert get(app, k["agent"], action["id"])["status"] == "executing"
    code, output = audit_verify(app.database_url)
    assert code == 0, output


def test_no_result_within_the_lease_makes_the_outcome_unknown_and_a_heartbeat_extends_it(
    app: InProcessServer,
) -> None:
    k = keys(app)
    action = submit(app, k["agent"], SMALL)
    assert start(app, k["agent"], action["id"]).status_code == 200
    app.advance(LEASE - 100)
    beat = post(app, f"/v1/actions/{action['id']}/heartbeat", k["agent"])
    assert beat.status_code == 200 and beat.json()["status"] == "executing"
    assert post(app, f"/v1/actions/{action['id']}/heartbeat", k["approver"]).status_code == 403
    app.advance(LEASE - 100)  # past the first lease, within the extended one
    assert get(app, k["agent"], action["id"])["status"] == "executing"
    app.advance(101)
    lapsed = get(app, k["agent"], action["id"])
    assert lapsed["status"] == "outcome_unknown" and "permit" not in lapsed
    [record] = [e for e in events(app, action["id"]) if e["event"] == "action.outcome_unknown"]
    assert record["actor"] == "system:lease" and record["data"]["status"] == "outcome_unknown"
    assert "10m" in record["data"]["reason"]
    late_beat = post(app, f"/v1/actions/{action['id']}/heartbeat", k["agent"])
    assert late_beat.status_code == 409 and "reconcile" in late_beat.json()["detail"]
    assert start(app, k["agent"], action["id"]).status_code == 409
    code, output = audit_verify(app.database_url)
    assert code == 0, output


def test_an_identical_retry_of_an_unknown_outcome_is_refused_until_someone_reconciles_it(
    app: InProcessServer,
) -> None:
    k = keys(app)
    action = submit(app, k["agent"], SMALL)
    start(app, k["agent"], action["id"])
    app.advance(LEASE + 1)
    retry = post(app, "/v1/actions", k["agent"], SMALL)
    assert retry.status_code == 409, retry.text
    error = retry.json()["error"]
    assert error["code"] == "outcome_unknown" and error["action_id"] == action["id"]
    assert action["id"] in retry.json()["detail"] and "reconcile" in retry.json()["detail"]
    # The refused retry left no action behind (its row is rolled back with its write).
    listed = app.get("/v1/actions?limit=100", headers={"Authorization": f"Bearer {k['admin']}"})
    assert listed.status_code == 200, listed.text
    assert [a["id"] for a in listed.json()["actions"]] == [action["id"]]
    # A different call, or the same call by another agent, is not held up.
    assert (
        post(app, "/v1/actions", k["agent"], SMALL | {"params": {"amount": 50, "customer_id": "cus_9"}}).status_code
        == 201
    )
    assert post(app, "/v1/actions", k["other"], SMALL).status_code == 201

    # Who may reconcile: not another agent, not with a made-up outcome.
    path = f"/v1/actions/{action['id']}/reconcile"
    assert post(app, path, k["other"], {"outcome": "failed"}).status_code == 404
    bad = post(app, path, k["approver"], {"outcome": "maybe"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"
    assert post(app, path, k["approver"], {}).status_code == 422
    r = post(app, path, k["approver"], {"outcome": "failed", "reason": "no charge in Stripe"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "failed"
    [record] = [e for e in events(app, action["id"]) if e["event"] == "action.reconciled"]
    assert record["data"]["reason"] == "no charge in Stripe" and record["actor"].startswith("key:")
    assert (record["data"]["outcome"], record["data"]["by"], record["data"]["previous"]) == (
        "failed",
        "a person",
        "outcome_unknown",
    )
    assert post(app, path, k["approver"], {"outcome": "succeeded"}).status_code == 409  # once
    # Reconciled: the identical retry is a new action now.
    again = post(app, "/v1/actions", k["agent"], SMALL)
    assert again.status_code == 201 and again.json()["id"] != action["id"]
    code, output = audit_verify(app.database_url)
    assert code == 0, output


def test_the_agent_reconciles_with_the_sdk_or_by_a_late_result(app: InProcessServer) -> None:
    k = keys(app)
    agent = ExecutionGovernorClient(app.url, k["agent"], transport=app.transport)
    approved = submit(app, k["agent"], LARGE)
    post(app, f"/v1/actions/{approved['id']}/approve", k["approver"], {"reason": "fine"})
    action = agent.get_action(approved["id"])
    verify_permit(action["permit"], tool="refund", operation="process", params=action["params"],
                  keys=agent.permit_keys(), now=app.clock())  # fmt: skip
    assert agent.start_action(action["id"])["status"] == "executing"
    with pytest.raises(ConflictError) as twice:
        agent.start_action(action["id"])
    assert twice.value.current_status == "executing"
    assert agent.heartbeat(action["id"])["status"] == "executing"
    app.advance(LEASE + 1)
    assert agent.get_action(action["id"])["status"] == "outcome_unknown"
    done = agent.reconcile(action["id"], "succeeded", reason="the refund is in the ledger", result={"id": "re_7"})
    assert done["status"] == "succeeded" and done["result"] == {"id": "re_7"}
    [record] = [e for e in events(app, action["id"]) if e["event"] == "action.reconciled"]
    assert record["data"]["by"] == "the agent"

    # A late result from the agent settles an unknown outcome too.
    late = submit(app, k["agent"], SMALL | {"params": {"amount": 33}})
    agent.start_action(late["id"])
    app.advance(LEASE + 1)
    assert agent.get_action(late["id"])["status"] == "outcome_unknown"
    reported = agent.report_result(late["id"], success=True, result={"id": "re_8"})
    assert reported["status"] == "succeeded"
    [late_record] = [e for e in events(app, late["id"]) if e["event"] == "action.succeeded"]
    assert late_record["data"]["previous"] == "outcome_unknown"
    agent.close()
    code, output = audit_verify(app.database_url)
    assert code == 0, output


def test_a_replay_under_the_same_idempotency_key_answers_with_its_own_action(app: InProcessServer) -> None:
    k = keys(app)
    headers = {"Authorization": f"Bearer {k['agent']}", "Idempotency-Key": "refund-cus_1-once"}
    first = app.post("/v1/actions", json=SMALL, headers=headers).json()
    start(app, k["agent"], first["id"])
    app.advance(LEASE + 1)
    replay = app.post("/v1/actions", json=SMALL, headers=headers)
    assert replay.json()["id"] == first["id"] and replay.json()["status"] == "outcome_unknown"
    other_key = app.post("/v1/actions", json=SMALL, headers=headers | {"Idempotency-Key": "another"})
    assert other_key.status_code == 409 and other_key.json()["error"]["code"] == "outcome_unknown"

"""kill -9 between start and result: the server process dies after the agent took its
single start (and, say, the payment went out) but before the result was reported. The
start is durable; after a restart the execution lease runs out, the action becomes
`outcome_unknown`, an identical retry is refused, and a person reconciles it. Real server
processes on SQLite and PostgreSQL: the lease runs on the real clock, so it is short."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from click.testing import CliRunner

from faramesh.cli.main import main
from faramesh.permit import verify_permit
from tests.conftest import ServerProcess, auth
from tests.inprocess import poll
from tests.permits.support import SMALL, audit_verify

pytestmark = pytest.mark.backends("sqlite", "postgresql")

LEASE = ("--execution-lease", "1s", "--rate-limit", "off")


def action_status(srv: ServerProcess, key: str, action_id: str) -> str:
    r = httpx.get(f"{srv.url}/v1/actions/{action_id}", headers=auth(key), timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


def test_kill_9_between_start_and_result_leaves_an_outcome_someone_must_reconcile(
    start_server: Callable[..., ServerProcess],
) -> None:
    env = {"FARAMESH_SECRET_KEY": "crash test secret"}
    srv = start_server(extra_args=LEASE, env=env)
    agent = srv.create_key("agent")
    approver = srv.create_key("approver")
    admin = srv.admin_key or ""
    with httpx.Client(base_url=srv.url, headers=auth(agent), timeout=10) as c:
        action = c.post("/v1/actions", json=SMALL).json()
        verify_permit(action["permit"], tool="refund", operation="process", params=SMALL["params"],
                      keys=srv.url + "/v1/permits/keys")  # fmt: skip
        started = c.post(f"/v1/actions/{action['id']}/start")
        assert started.status_code == 200 and started.json()["status"] == "executing"
    srv.kill9()  # the side effect may have happened; the result never comes

    restarted = start_server(database_url=srv.database_url, extra_args=LEASE, env=env)
    # The acknowledged start survived the crash; the restarted server's sweeper ends the lease.
    assert action_status(restarted, agent, action["id"]) in ("executing", "outcome_unknown")
    poll(lambda: action_status(restarted, agent, action["id"]) == "outcome_unknown", timeout=30)

    retry = httpx.post(restarted.url + "/v1/actions", json=SMALL, headers=auth(agent), timeout=10)
    assert retry.status_code == 409 and retry.json()["error"]["code"] == "outcome_unknown"
    assert retry.json()["error"]["action_id"] == action["id"]
    queue = httpx.get(restarted.url + "/v1/actions", params={"status": "outcome_unknown"}, headers=auth(admin))
    assert [a["id"] for a in queue.json()["actions"]] == [action["id"]]

    # A person who checked the payment provider says it ran.
    reconciled = CliRunner().invoke(
        main,
        ["reconcile", action["id"], "--outcome", "succeeded", "--reason", "the refund is in the provider's log"],
        env={"FARAMESH_URL": restarted.url, "FARAMESH_API_KEY": approver},
    )
    assert reconciled.exit_code == 0, reconciled.output
    assert reconciled.output.strip() == f"{action['id']} is now succeeded."
    again = httpx.post(restarted.url + "/v1/actions", json=SMALL, headers=auth(agent), timeout=10)
    assert again.status_code == 201 and again.json()["status"] == "allowed"
    trail = httpx.get(f"{restarted.url}/v1/actions/{action['id']}/events", headers=auth(admin)).json()["events"]
    assert [e["event"] for e in trail] == [
        "action.submitted",
        "action.started",
        "action.outcome_unknown",
        "action.reconciled",
    ]
    restarted.stop()
    code, output = audit_verify(srv.database_url)
    assert code == 0, output

"""Standing grants over REST, on SQLite and PostgreSQL: a held action that fits an active
grant is approved at once (`decided_by: "grant:<id>"`); limits, max uses, expiry,
revocation, denies untouched, the quorum rule, approver groups and roles."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from faramesh import audit
from tests.approvals.support import POLICY, decide, get, submit
from tests.conftest import auth, fresh_database
from tests.inprocess import InProcessServer, inprocess_server

pytestmark = pytest.mark.backends("sqlite", "postgresql")


@pytest.fixture
def app(tmp_path: Any, backend: str) -> Iterator[InProcessServer]:
    with fresh_database(backend, tmp_path) as url, inprocess_server(url, policy=POLICY) as server:
        yield server


def grant(server: InProcessServer, key: str, **body: Any) -> Any:
    body = {"tool": "refund", "operation": "process", "expires_in": "1h", "reason": "routine refunds"} | body
    return server.post("/v1/grants", json=body, headers=auth(key))


def verify_log(server: InProcessServer) -> None:
    with server.governor.store.connect() as conn:
        report = audit.verify_database(conn)
    assert report.ok, report.to_dict()


def test_a_fitting_held_action_is_approved_at_once_and_counts_one_use(app: InProcessServer) -> None:
    approver = app.create_key("approver", name="ann")
    agent = app.create_key("agent", agent_id="billing-bot")
    r = grant(app, approver, params={"amount_lte": 200}, max_uses=2)
    assert r.status_code == 201, r.text
    g = r.json()
    assert g["uses"] == 0 and g["uses_left"] == 2 and g["active"] is True and g["params"] == {"amount_lte": 200}
    assert g["created_by"].endswith("(ann)")

    first = submit(app, agent, "refund", "process", amount=150)
    assert first["status"] == "approved", first
    assert first["decided_by"] == f"grant:{g['id']}"
    assert g["id"] in first["decision_reason"] and "routine refunds" in first["decision_reason"]
    assert first["decision"] == "require_approval"  # the policy held it; the grant approved it
    # Outside the grant's conditions: held as usual.
    big = submit(app, agent, "refund", "process", amount=250)
    assert big["status"] == "pending_approval"
    # The second use, then the grant is used up.
    assert submit(app, agent, "refund", "process", amount=120)["status"] == "approved"
    assert submit(app, agent, "refund", "process", amount=130)["status"] == "pending_approval"
    [listed] = app.get("/v1/grants", headers=auth(approver)).json()["grants"]
    assert listed["uses"] == 2 and listed["uses_left"] == 0 and listed["active"] is False
    assert app.get("/v1/grants?active=true", headers=auth(approver)).json()["grants"] == []

    # The approval is audited: approved by the grant, and the grant's use.
    events = app.get(f"/v1/actions/{first['id']}/events", headers=auth(approver)).json()["events"]
    assert [e["event"] for e in events] == ["action.submitted", "action.approved"]
    assert events[1]["actor"] == f"grant:{g['id']}" and events[1]["data"]["grant_id"] == g["id"]
    with app.governor.store.connect() as conn:
        records = audit.events_after(conn, 0, 10_000)
    kinds = [(r.event, r.data.get("grant_id")) for r in records if r.event.startswith("grant.")]
    assert kinds == [("grant.created", g["id"]), ("grant.used", g["id"]), ("grant.used", g["id"])]
    verify_log(app)


def test_the_agent_can_execute_a_granted_action(app: InProcessServer) -> None:
    approver = app.create_key("approver")
    agent = app.create_key("agent")
    assert grant(app, approver, params={"amount_lte": 500}).status_code == 201
    action = submit(app, agent, "refund", "process", amount=300)
    assert action["status"] == "approved"
    r = app.post(f"/v1/actions/{action['id']}/result", json={"success": True}, headers=auth(agent))
    assert r.status_code == 200 and r.json()["status"] == "succeeded"


def test_a_grant_never_changes_a_deny(app: InProcessServer) -> None:
    approver = app.create_key("approver")
    agent = app.create_key("agent")
    # A grant wide enough to cover refunds the policy denies outright.
    assert grant(app, approver, params={"amount_lte": 1_000_000}).status_code == 201
    denied = submit(app, agent, "refund", "process", amount=20_000)
    assert denied["status"] == "denied" and denied["decided_by"] is None
    # And the policy's default deny (no rule for this tool) stays.
    assert grant(app, approver, tool="delete", operation="user").status_code == 201
    assert submit(app, agent, "delete", "user", id=1)["status"] == "denied"


def test_a_grant_never_applies_to_a_rule_needing_several_approvers(app: InProcessServer) -> None:
    approver = app.create_key("approver")
    agent = app.create_key("agent")
    assert grant(app, approver, params={"amount_lte": 9000}).status_code == 201
    huge = submit(app, agent, "refund", "process", amount=6000)  # huge-refunds: quorum 2
    assert huge["status"] == "pending_approval"
    lead = app.create_key("approver", groups=("finance-leads",))
    assert grant(app, lead, tool="wire", operation="send").status_code == 201
    assert submit(app, agent, "wire", "send", amount=1)["status"] == "pending_approval"
    [g] = [x for x in app.get("/v1/grants", headers=auth(lead)).json()["grants"] if x["tool"] == "refund"]
    assert g["uses"] == 0


def test_expiry_and_revocation_end_a_grant(app: InProcessServer) -> None:
    approver = app.create_key("approver")
    agent = app.create_key("agent")
    short = grant(app, approver, tool="shell", operation="run", expires_in="15m").json()
    assert submit(app, agent, "shell", "run", cmd="ls")["status"] == "approved"
    app.clock.advance(15 * 60)
    assert submit(app, agent, "shell", "run", cmd="ls")["status"] == "pending_approval"
    [listed] = [g for g in app.get("/v1/grants", headers=auth(approver)).json()["grants"] if g["id"] == short["id"]]
    assert listed["active"] is False and listed["uses"] == 1

    other = app.create_key("approver", name="bob")
    g = grant(app, approver, tool="shell", operation="run").json()
    assert submit(app, agent, "shell", "run", cmd="pwd")["status"] == "approved"
    r = app.delete(f"/v1/grants/{g['id']}", headers=auth(other))  # any approver may stop a grant
    assert r.status_code == 200, r.text
    assert r.json()["revoked_by"].endswith("(bob)") and r.json()["active"] is False
    assert submit(app, agent, "shell", "run", cmd="pwd")["status"] == "pending_approval"
    again = app.delete(f"/v1/grants/{g['id']}", headers=auth(other))
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_transition"
    missing = app.delete("/v1/grants/0123456789abcdef", headers=auth(other))
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "id"
    with app.governor.store.connect() as conn:
        revoked = [r for r in audit.events_after(conn, 0, 10_000) if r.event == "grant.revoked"]
    assert [r.data["grant_id"] for r in revoked] == [g["id"]]
    verify_log(app)


def test_agents_cannot_create_list_or_revoke_grants(app: InProcessServer) -> None:
    agent = app.create_key("agent")
    approver = app.create_key("approver")
    r = grant(app, agent)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert app.get("/v1/grants", headers=auth(agent)).status_code == 403
    g = grant(app, approver).json()
    assert app.delete(f"/v1/grants/{g['id']}", headers=auth(agent)).status_code == 403
    assert app.get("/v1/grants", headers=auth(approver)).json()["grants"][0]["active"] is True


def test_a_grant_applies_only_where_its_creator_could_approve(app: InProcessServer) -> None:
    approver = app.create_key("approver", name="self-submitter")
    agent = app.create_key("agent", agent_id="ops-bot")
    g = grant(app, approver, tool="shell", operation="run", agent_id="ops-bot").json()
    # Only for the named agent.
    assert submit(app, app.create_key("agent", agent_id="other-bot"), "shell", "run")["status"] == "pending_approval"
    assert submit(app, agent, "shell", "run")["status"] == "approved"
    # Never for the creator's own submissions.
    assert submit(app, approver, "shell", "run")["status"] == "pending_approval"
    # A revoked creator's grants stop.
    admin = auth(app.admin_key)
    [key] = [k for k in app.get("/v1/keys", headers=admin).json()["keys"] if k["name"] == "self-submitter"]
    assert app.delete(f"/v1/keys/{key['id']}", headers=admin).status_code == 200
    assert submit(app, agent, "shell", "run")["status"] == "pending_approval"
    assert g["agent_id"] == "ops-bot"


def test_grants_respect_the_rules_approver_groups(tmp_path: Any, backend: str) -> None:
    policy = tmp_path / "groups.yaml"
    policy.write_text(
        "rules:\n  - match: {tool: payout, operation: send}\n    require_approval: true\n"
        "    approval: {approvers: [treasury]}\n"
    )
    with fresh_database(backend, tmp_path, "groups") as url, inprocess_server(url, policy=policy) as server:
        agent = server.create_key("agent")
        outsider = server.create_key("approver")
        assert grant(server, outsider, tool="payout", operation="send").status_code == 201
        assert submit(server, agent, "payout", "send", amount=5)["status"] == "pending_approval"
        member = server.create_key("approver", groups=("treasury",))
        assert grant(server, member, tool="payout", operation="send").status_code == 201
        assert submit(server, agent, "payout", "send", amount=5)["status"] == "approved"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expires_in": None}, "expires_in"),
        ({"expires_in": "8d"}, "expires_in"),
        ({"expires_in": "soon"}, "expires_in"),
        ({"expires_in": -5}, "expires_in"),
        ({"max_uses": 0}, "max_uses"),
        ({"reason": "  "}, "reason"),
        ({"tool": "refund*"}, "tool"),
        ({"params": {"amount_between": 5}}, "params.amount_between"),
        ({"params": {"amount_gt": "many"}}, "params.amount_gt"),
        ({"params": {"context.env_eq": "prod"}}, "params"),
        ({"params": {"tool": "other"}}, "params"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_grants_are_refused_with_the_field(app: InProcessServer, body: dict[str, Any], field: str) -> None:
    approver = app.create_key("approver")
    base = {"tool": "refund", "operation": "process", "expires_in": "1h", "reason": "routine"}
    merged = {k: v for k, v in (base | body).items() if v is not None}
    r = app.post("/v1/grants", json=merged, headers=auth(approver))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field, r.json()
    assert app.get("/v1/grants", headers=auth(approver)).json()["grants"] == []


def test_racing_submits_never_use_a_grant_more_than_allowed(app: InProcessServer) -> None:
    approver = app.create_key("approver")
    agent = app.create_key("agent")
    g = grant(app, approver, tool="shell", operation="run", max_uses=3).json()
    results: list[str] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        action = submit(app, agent, "shell", "run", n=i)
        with lock:
            results.append(action["status"])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count("approved") == 3 and results.count("pending_approval") == 9
    [listed] = app.get("/v1/grants", headers=auth(approver)).json()["grants"]
    assert listed["id"] == g["id"] and listed["uses"] == 3
    verify_log(app)


def test_a_held_action_left_by_a_grant_is_decided_as_usual(app: InProcessServer) -> None:
    approver = app.create_key("approver")
    agent = app.create_key("agent")
    assert grant(app, approver, params={"amount_lte": 200}).status_code == 201
    held = submit(app, agent, "refund", "process", amount=900)
    assert decide(app, approver, held["id"], reason="checked").json()["status"] == "approved"
    assert get(app, agent, held["id"])["decided_by"].startswith("key:")

"""`policy replay --grants` and `policy prove --grants`: the policy as the server applies it
with standing grants (held actions a grant fits are allowed; denies and quorum rules stay)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from faramesh.cli.main import main
from faramesh.policy import Effect, Policy
from faramesh.policy.tooling import GrantsError, load_grants, prove, with_grants
from tests.approvals.support import submit
from tests.conftest import auth
from tests.inprocess import inprocess_server

POLICY = """
default: deny
rules:
  - id: ceiling
    match: {tool: refund, operation: process, amount_gt: 10000}
    deny: true
  - id: huge
    match: {tool: refund, operation: process, amount_gt: 5000}
    require_approval: true
    approval: {quorum: 2}
  - id: large
    match: {tool: "refund*", operation: process, amount_gt: 100}
    require_approval: true
  - id: small
    match: {tool: refund, operation: process}
    allow: true
"""
GRANT = {
    "id": "g1",
    "tool": "refund",
    "operation": "process",
    "agent_id": "billing-bot",
    "params": {"amount_lte": 200},
    "reason": "month-end",
    "active": True,
}


def decide(policy: Policy, amount: float, agent: str = "billing-bot", tool: str = "refund") -> Effect:
    return policy.evaluate(
        tool=tool, operation="process", params={"amount": amount}, context={}, agent={"id": agent}
    ).effect


def test_with_grants_allows_only_holds_the_grant_fits() -> None:
    base = Policy.from_yaml(POLICY)
    granted = with_grants(base, [GRANT])
    assert decide(base, 150) is Effect.REQUIRE_APPROVAL
    assert decide(granted, 150) is Effect.ALLOW
    assert (
        granted.evaluate(
            tool="refund", operation="process", params={"amount": 150}, agent={"id": "billing-bot"}
        ).rule_id
        == "large/grant:g1"
    )
    assert decide(granted, 250) is Effect.REQUIRE_APPROVAL  # outside the grant's conditions
    assert decide(granted, 150, agent="other-bot") is Effect.REQUIRE_APPROVAL  # another agent
    assert decide(granted, 50) is Effect.ALLOW  # unchanged
    wide = with_grants(base, [GRANT | {"params": {"amount_lte": 1_000_000}, "agent_id": None}])
    assert decide(wide, 7000) is Effect.REQUIRE_APPROVAL  # a quorum rule stays held
    assert decide(wide, 20000) is Effect.DENY  # a deny stays a deny
    assert with_grants(base, []) is base


def test_prove_takes_grants_into_account() -> None:
    base = Policy.from_yaml(POLICY)
    claim = "tool=refund operation=process amount>100 => not allow"
    assert prove(base, claim).verdict == "proven"
    result = prove(with_grants(base, [GRANT]), claim)
    assert result.verdict == "counter-example"
    example = result.counterexample
    assert example is not None and 100 < example.params["amount"] <= 200


def test_the_cli_reads_the_grants_api_answer(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    grants = tmp_path / "grants.json"
    grants.write_text(json.dumps({"grants": [GRANT, GRANT | {"id": "old", "params": {}, "active": False}]}))
    claim = "tool=refund operation=process amount>100 => not allow"
    runner = CliRunner()
    plain = runner.invoke(main, ["policy", "prove", str(policy), "--claim", claim])
    assert plain.exit_code == 0, plain.output
    granted = runner.invoke(main, ["policy", "prove", str(policy), "--claim", claim, "--grants", str(grants)])
    assert granted.exit_code == 1 and "counter-example" in granted.output
    grants.write_text('[{"tool": 5}]')
    bad = runner.invoke(main, ["policy", "prove", str(policy), "--claim", claim, "--grants", str(grants)])
    assert bad.exit_code == 2 and "grants[0].tool" in bad.output


def test_replay_with_grants_on_recorded_actions(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    url = f"sqlite:///{tmp_path / 'replay.db'}"
    with inprocess_server(url, policy=policy) as app:
        agent = app.create_key("agent", agent_id="billing-bot")
        held = submit(app, agent, "refund", "process", amount=150)
        submit(app, agent, "refund", "process", amount=900)
        approver = app.create_key("approver")
        body = {k: v for k, v in GRANT.items() if k in ("tool", "operation", "agent_id", "params", "reason")}
        made = app.post("/v1/grants", json=body | {"expires_in": "1h"}, headers=auth(approver))
        assert made.status_code == 201
        listed = app.get("/v1/grants", headers=auth(approver)).text
    grants = tmp_path / "grants.json"
    grants.write_text(listed)
    runner = CliRunner()
    plain = runner.invoke(main, ["policy", "replay", str(policy), "--json", "--database-url", url])
    assert json.loads(plain.output)["changed"] == []
    out = runner.invoke(
        main, ["policy", "replay", str(policy), "--json", "--grants", str(grants), "--database-url", url]
    )
    changed = json.loads(out.output)["changed"]
    assert [(c["id"], c["was"], c["now"]) for c in changed] == [(held["id"], "require_approval", "allow")]


def test_bad_grants_files_are_refused() -> None:
    with pytest.raises(GrantsError):
        load_grants("{")
    with pytest.raises(GrantsError):
        load_grants('{"grants": [{"tool": "a"}]}')
    assert load_grants('[{"tool": "a", "operation": "b", "active": false}]') == []

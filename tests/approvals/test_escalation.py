"""Reminders and escalations of held actions that wait too long (`approval.remind_after`,
`escalate_after`, `escalate_to`), each sent once, audited, and delivered through the
webhooks (JSON and Teams Adaptive Cards), on SQLite and PostgreSQL with a fake clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faramesh import audit
from faramesh.policy import Policy, PolicyError
from tests.approvals.support import Receiver, decide, eventually, submit
from tests.conftest import fresh_database
from tests.inprocess import FakeClock, InProcessServer, inprocess_server

pytestmark = pytest.mark.backends("sqlite", "postgresql")

POLICY = """
rules:
  - id: refunds
    match: {tool: refund, operation: process, amount_gt: 100}
    require_approval: true
    approval: {timeout: 2h, remind_after: 10m, escalate_after: 30m, escalate_to: [finance-leads, "#approvals-oncall"]}
    reason: Large refunds need approval
    risk: high
  - id: deploys
    match: {tool: deploy}
    require_approval: true
    reason: Deploys need approval
"""


@pytest.fixture
def setup(tmp_path: Path, backend: str) -> Iterator[tuple[InProcessServer, Receiver, Receiver]]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    json_hook, teams_hook = Receiver().start(), Receiver().start()
    hooks = tmp_path / "hooks.yaml"
    hooks.write_text(
        json.dumps(
            [
                {"url": json_hook.url, "secret": "s3cret", "events": ["*"]},
                {"url": teams_hook.url, "format": "teams"},
            ]
        )
    )
    with (
        fresh_database(backend, tmp_path) as url,
        inprocess_server(
            url,
            policy=policy,
            clock=FakeClock(),
            webhooks=str(hooks),
            webhook_retry_base=0.05,
            public_url="https://faramesh.example.com",
        ) as app,
    ):
        try:
            yield app, json_hook, teams_hook
        finally:
            json_hook.stop()
            teams_hook.stop()


def records(app: InProcessServer, action_id: str) -> list[Any]:
    with app.governor.store.connect() as conn:
        return [r for r in audit.events_after(conn, 0, 10_000) if r.action_id == action_id]


def test_a_waiting_action_is_reminded_then_escalated_once_each(
    setup: tuple[InProcessServer, Receiver, Receiver],
) -> None:
    app, hook, teams = setup
    agent = app.create_key("agent")
    action = submit(app, agent, "refund", "process", amount=500)
    other = submit(app, agent, "deploy", "prod")  # its rule asks for no reminders
    app.clock.advance(9 * 60)
    assert app.governor.send_nudges() == 0
    app.clock.advance(61)
    eventually(lambda: [r for r in records(app, action["id"]) if r.event == "action.reminder"])
    app.governor.send_nudges()
    app.governor.send_nudges()
    kinds = [r.event for r in records(app, action["id"])]
    assert kinds == ["action.submitted", "action.reminder"]
    app.clock.advance(20 * 60)  # 30m and a second since it was submitted
    eventually(lambda: [r for r in records(app, action["id"]) if r.event == "action.escalated"])
    app.governor.send_nudges()
    kinds = [r.event for r in records(app, action["id"])]
    assert kinds == ["action.submitted", "action.reminder", "action.escalated"]
    escalated = records(app, action["id"])[-1]
    assert escalated.actor == "system:escalation"
    assert escalated.data["escalate_to"] == ["finance-leads", "#approvals-oncall"]
    assert escalated.data["waited"] in ("30m", "1801s") and escalated.data["status"] == "pending_approval"
    assert [r.event for r in records(app, other["id"])] == ["action.submitted"]

    # Delivered through the webhooks: JSON with the escalation's targets, Teams as a card.
    [reminder] = eventually(lambda: hook.of_type("action.reminder"))
    [escalation] = eventually(lambda: hook.of_type("action.escalated"))
    assert reminder.json()["action_id"] == action["id"]
    assert escalation.json()["details"]["escalate_to"] == ["finance-leads", "#approvals-oncall"]
    card = eventually(lambda: [r.json() for r in teams.requests if "Escalated" in r.json()["summary"]])[0]
    content = card["attachments"][0]["content"]
    assert card["type"] == "message" and content["type"] == "AdaptiveCard"
    assert content["actions"][0]["url"] == f"https://faramesh.example.com/actions/{action['id']}"
    assert not [a for a in content.get("actions", []) if a["type"] != "Action.OpenUrl"]  # decide in the dashboard

    # Decided actions are never nudged; the log still verifies.
    with app.governor.store.connect() as conn:
        assert audit.verify_database(conn).ok


def test_a_decided_action_is_not_nudged(setup: tuple[InProcessServer, Receiver, Receiver]) -> None:
    app = setup[0]
    agent = app.create_key("agent")
    approver = app.create_key("approver")
    action = submit(app, agent, "refund", "process", amount=600)
    assert decide(app, approver, action["id"], reason="fine").json()["status"] == "approved"
    app.clock.advance(3600)
    app.governor.send_nudges()
    assert [r.event for r in records(app, action["id"])] == ["action.submitted", "action.approved"]


def test_teams_cards_summarise_a_held_action_with_a_link(setup: tuple[InProcessServer, Receiver, Receiver]) -> None:
    app, _, teams = setup
    agent = app.create_key("agent")
    action = submit(app, agent, "refund", "process", amount=700, note="**bold** [link](http://evil)")
    card = eventually(lambda: [r.json() for r in teams.requests if action["id"] in json.dumps(r.json())])[0]
    content = card["attachments"][0]["content"]
    assert card["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert content["body"][0]["text"].startswith("Approval needed: refund.process")
    facts = {f["title"]: f["value"] for f in content["body"][1]["facts"]}
    assert facts["Agent"] and facts["Risk"] == "high" and "Large refunds" in facts["Reason"]
    assert "http://evil" not in json.dumps(content)  # params are not rendered into the card


def test_nudge_settings_are_validated() -> None:
    for bad, field in (
        ("{escalate_after: 30m}", "escalate_after"),
        ("{escalate_to: [leads]}", "escalate_to"),
        ("{remind_after: soon}", "remind_after"),
        ("{escalate_after: 5m, escalate_to: [1]}", "escalate_to"),
    ):
        text = f"rules:\n  - match: {{tool: a}}\n    require_approval: true\n    approval: {bad}\n"
        with pytest.raises(PolicyError) as err:
            Policy.from_yaml(text)
        assert any(p.key.endswith(field) for p in err.value.problems), (bad, err.value)
    # A policy without nudges keeps its hash (the spec only gains keys that are set).
    plain = "rules:\n  - match: {tool: a}\n    require_approval: true\n    approval: {quorum: 2}\n"
    assert "remind_after" not in json.dumps(Policy.from_yaml(plain).rules[0].spec)

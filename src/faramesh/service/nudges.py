"""Reminders and escalations of held actions that wait too long.

A rule may say `approval: {remind_after: 10m, escalate_after: 30m, escalate_to: [...]}`.
The server's sweeper calls `send_due`: each held action of such a rule is reminded
once after `remind_after` and escalated once after `escalate_after`, each recorded in
the audit log (`action.reminder`, `action.escalated`) and published as an event, so
the webhooks, Slack and the dashboard hear of it. The rule is read from the active
policy by the action's rule id. A nudge is taken by inserting its row (one per action
and kind), so several server processes send each exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from faramesh import audit
from faramesh.durations import humanize
from faramesh.model import Status
from faramesh.policy import Policy
from faramesh.storage import Store, nudges_repo
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories

ACTOR = "system:escalation"
REMINDER, ESCALATION = "reminder", "escalation"
EVENTS = {REMINDER: "action.reminder", ESCALATION: "action.escalated"}
_PENDING = Status.PENDING_APPROVAL.value

Published = Callable[[str, Any, int, dict[str, Any]], None]


def plans(policy: Policy) -> list[tuple[str, str, float, tuple[str, ...]]]:
    """(rule id, kind, after seconds, escalate_to) for every nudge the policy asks for."""
    out: list[tuple[str, str, float, tuple[str, ...]]] = []
    for rule in policy.rules:
        spec = rule.approval
        if spec is None:
            continue
        if spec.remind_after_seconds is not None:
            out.append((rule.id, REMINDER, spec.remind_after_seconds, ()))
        if spec.escalate_after_seconds is not None:
            out.append((rule.id, ESCALATION, spec.escalate_after_seconds, spec.escalate_to))
    return out


def send_due(store: Store, policy: Policy, now: float, batch: int, on_sent: Published) -> int:
    """Send every reminder and escalation due at `now` (up to `batch` of each kind and rule);
    `on_sent(event, row, seq, data)` is called after each commit. Returns how many."""
    sent = 0
    for rule_id, kind, after, targets in plans(policy):
        due = store.read(partial(_due, rule_id=rule_id, kind=kind, before=now - after, limit=batch))
        for action_id in due:
            done = store.write(
                partial(_nudge, store, action_id=action_id, kind=kind, after=after, targets=targets, now=now)
            )
            if done is not None:
                sent += 1
                on_sent(*done)
    return sent


def _due(conn: Connection, *, rule_id: str, kind: str, before: float, limit: int) -> list[str]:
    return nudges_repo.due_for(conn, status=_PENDING, rule_id=rule_id, created_before=before, kind=kind, limit=limit)


def _nudge(
    store: Store,
    conn: Connection,
    *,
    action_id: str,
    kind: str,
    after: float,
    targets: tuple[str, ...],
    now: float,
) -> tuple[str, Any, int, dict[str, Any]] | None:
    row = Repositories.sql(conn).actions.get(action_id)
    if row is None or row.status != _PENDING:
        return None  # decided meanwhile: nothing to nudge
    if not nudges_repo.record_nudge(conn, action_id=action_id, kind=kind, at=now):
        return None  # another process sent it
    event = EVENTS[kind]
    waited = humanize(round(now - row.created_at)) if now > row.created_at else "0s"
    data: dict[str, Any] = {"status": _PENDING, "waited": waited, "after": humanize(after)}
    if kind == ESCALATION:
        data["escalate_to"] = list(targets)
    seq = audit.append(conn, event=event, ts=now, action_id=action_id, actor=ACTOR, data=data)
    store.notify(conn, type=event, action_id=action_id, seq=seq)
    return event, row, seq, {"escalate_to": list(targets)} if kind == ESCALATION else {}

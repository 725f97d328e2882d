"""Re-decide recorded actions with a candidate policy and report what would change.

Each stored action is evaluated again as the server evaluated it: the same
tool, operation, params and context, the agent as the server saw it (its id,
and the role and groups of the key that submitted it) and the time it was
submitted. The candidate's effect is compared with the recorded ``decision``.

Rate limits and budgets are not counted again: an action that a limit denied
counts as unchanged while the same rule still matches it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from faramesh.policy.model import Decision, Effect
from faramesh.policy.policy import Policy
from faramesh.policy.timing import TimingError, parse_duration

# The reasons service.py gives when a limit turns a decision into a deny.
LIMIT_REASONS = ("Rate limit exceeded", "Budget exceeded", "Limit ", "Budget ")
_SEQ = re.compile(r"\d+")


class ReplayError(ValueError):
    """The --since value could not be used; the message says why."""


@dataclass(frozen=True)
class Since:
    seq: int | None = None  # actions with this sequence number or later
    at: float | None = None  # actions created at or after this Unix time

    def describe(self) -> str:
        if self.seq is not None:
            return f"from sequence number {self.seq}"
        if self.at is not None:
            return "since " + datetime.fromtimestamp(self.at, UTC).isoformat().replace("+00:00", "Z")
        return "all actions"


def parse_since(text: str | None, now: float | None = None) -> Since:
    """``1200`` (a sequence number), ``7d`` / ``12h`` / ``30m`` (a duration back from now) or an ISO time/date."""
    if text is None or not text.strip():
        return Since()
    text = text.strip()
    if _SEQ.fullmatch(text):
        return Since(seq=int(text))
    try:
        return Since(at=(time.time() if now is None else now) - parse_duration(text))
    except TimingError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReplayError(
            f"--since {text!r}: give a sequence number (1200), a duration (7d, 12h, 30m) or an ISO time "
            "(2026-01-05 or 2026-01-05T09:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return Since(at=parsed.timestamp())


@dataclass(frozen=True)
class ReplayChange:
    id: str
    seq: int
    tool: str
    operation: str
    was: str
    now: str
    rule_id: str | None  # the candidate's rule (None: its default)
    was_rule_id: str | None
    reason: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tool": self.tool,
            "operation": self.operation,
            "was": self.was,
            "now": self.now,
            "rule_id": self.rule_id,
        }


@dataclass
class ReplayReport:
    policy_hash: str
    since: Since
    total: int = 0
    changed: list[ReplayChange] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "changed": [c.to_dict() for c in self.changed]}

    def render(self) -> str:
        lines = [f"Replayed {self.total} action(s) ({self.since.describe()}) against policy {self.policy_hash[:16]}."]
        if not self.changed:
            lines.append("No decision would change.")
            return "\n".join(lines)
        lines.append(f"{len(self.changed)} decision(s) would change:")
        for c in self.changed:
            when = datetime.fromtimestamp(c.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            by = c.rule_id or "(default)"
            lines.append(f"  {c.id}  {when}  {c.tool}.{c.operation}  {c.was} → {c.now}  by {by}: {c.reason}")
        return "\n".join(lines)


class ReplayRecord(Protocol):
    """One recorded action as the server decided it (faramesh.storage.history_reads.RecordedAction)."""

    @property
    def seq(self) -> int: ...
    @property
    def id(self) -> str: ...
    @property
    def tool(self) -> str: ...
    @property
    def operation(self) -> str: ...
    @property
    def params(self) -> Any: ...
    @property
    def context(self) -> Any: ...
    @property
    def agent_id(self) -> str | None: ...
    @property
    def decision(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def rule_id(self) -> str | None: ...
    @property
    def created_at(self) -> float: ...
    @property
    def role(self) -> str | None: ...
    @property
    def groups(self) -> Sequence[str]: ...


def replay(policy: Policy, records: Iterable[ReplayRecord], since: Since | None = None) -> ReplayReport:
    """Evaluate each recorded action (oldest first) with ``policy``; report those whose decision changes.

    ``records`` are the stored actions, already limited to ``since`` (which only labels
    the report): read them with ``faramesh.storage.history_reads.recorded_actions``.
    """
    if isinstance(records, (str, bytes)):
        raise TypeError(
            "replay() takes recorded actions, not a database URL: read them with "
            "faramesh.storage.history_reads.recorded_actions(database_url, since_seq=…, since_at=…)"
        )
    report = ReplayReport(policy.hash, since or Since())
    for record in records:
        report.total += 1
        change = _replay_one(policy, record)
        if change is not None:
            report.changed.append(change)
    return report


def _replay_one(policy: Policy, row: ReplayRecord) -> ReplayChange | None:
    params, context = row.params, row.context
    agent = {"id": row.agent_id, "groups": list(row.groups), "role": row.role or "agent"}
    decision = policy.evaluate(
        tool=row.tool,
        operation=row.operation,
        params=params if isinstance(params, dict) else None,
        context=context if isinstance(context, dict) else None,
        agent=agent,
        now=datetime.fromtimestamp(row.created_at, UTC),
    )
    if decision.effect.value == row.decision or _limit_denied(row, decision):
        return None
    return ReplayChange(
        id=row.id,
        seq=row.seq,
        tool=row.tool,
        operation=row.operation,
        was=row.decision,
        now=decision.effect.value,
        rule_id=decision.rule_id,
        was_rule_id=row.rule_id,
        reason=decision.reason,
        created_at=row.created_at,
    )


def _limit_denied(row: ReplayRecord, decision: Decision) -> bool:
    """A limit turned this rule's decision into a deny, and the candidate still decides by that rule."""
    return (
        row.decision == Effect.DENY.value
        and bool(decision.limits)
        and decision.rule_id == row.rule_id
        and isinstance(row.reason, str)
        and row.reason.startswith(LIMIT_REASONS)
    )

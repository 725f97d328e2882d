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
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import inspect, select
from sqlalchemy.engine import make_url

from faramesh.policy.model import Decision, Effect
from faramesh.policy.policy import Policy
from faramesh.policy.timing import TimingError, parse_duration

# The reasons service.py gives when a limit turns a decision into a deny.
LIMIT_REASONS = ("Rate limit exceeded", "Budget exceeded", "Limit ", "Budget ")
_SEQ = re.compile(r"\d+")
BATCH = 1000


class ReplayError(ValueError):
    """The database or the --since value could not be used; the message says why."""


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


def replay(policy: Policy, database_url: str, since: Since | None = None) -> ReplayReport:
    """Evaluate every stored action (oldest first) with ``policy``; report those whose decision changes."""
    from faramesh.storage import Store
    from faramesh.storage.schema import actions, api_keys

    since = since or Since()
    _check_exists(database_url)
    store = Store(database_url)
    report = ReplayReport(policy.hash, since)
    try:
        if not store.read(lambda conn: inspect(conn).has_table("actions")):
            raise ReplayError(f"{database_url} has no actions table; is it a Faramesh database?")
        query = (
            select(
                actions.c.seq,
                actions.c.id,
                actions.c.tool,
                actions.c.operation,
                actions.c.params,
                actions.c.context,
                actions.c.agent_id,
                actions.c.decision,
                actions.c.reason,
                actions.c.rule_id,
                actions.c.created_at,
                api_keys.c.role,
                api_keys.c.groups,
            )
            .select_from(actions.outerjoin(api_keys, api_keys.c.id == actions.c.submitted_by))
            .order_by(actions.c.seq)
            .limit(BATCH)
        )
        if since.seq is not None:
            query = query.where(actions.c.seq >= since.seq)
        if since.at is not None:
            query = query.where(actions.c.created_at >= since.at)
        for row in _rows(store, query, actions.c.seq):
            report.total += 1
            change = _replay_one(policy, row)
            if change is not None:
                report.changed.append(change)
    finally:
        store.close()
    return report


def _check_exists(database_url: str) -> None:
    try:
        url = make_url(database_url)
    except Exception as exc:
        raise ReplayError(f"invalid database URL {database_url!r}: {exc}") from None
    local = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if local and not Path(str(url.database)).expanduser().exists():
        raise ReplayError(f"no database at {url.database}; set FARAMESH_DATABASE_URL or --database-url")


def _rows(store: Any, query: Any, seq_column: Any) -> Iterator[Any]:
    last: int | None = None
    while True:
        page = query if last is None else query.where(seq_column > last)
        rows = store.read(lambda conn, q=page: conn.execute(q).all())
        yield from rows
        if len(rows) < BATCH:
            return
        last = rows[-1].seq


def _replay_one(policy: Policy, row: Any) -> ReplayChange | None:
    try:
        params = orjson.loads(row.params)
        context = orjson.loads(row.context)
        groups = orjson.loads(row.groups) if row.groups else []
    except orjson.JSONDecodeError:
        params, context, groups = None, None, []
    agent = {"id": row.agent_id, "groups": groups, "role": row.role or "agent"}
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


def _limit_denied(row: Any, decision: Decision) -> bool:
    """A limit turned this rule's decision into a deny, and the candidate still decides by that rule."""
    return (
        row.decision == Effect.DENY.value
        and bool(decision.limits)
        and decision.rule_id == row.rule_id
        and isinstance(row.reason, str)
        and row.reason.startswith(LIMIT_REASONS)
    )

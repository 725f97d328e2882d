"""Expiry: a pending action whose approval window has passed is denied, and an approval
nobody picked up lapses (the action is cancelled).

No approval is open forever: a held action whose rule sets no timeout gets the server's
(`DEFAULT_APPROVAL_TIMEOUT` unless configured, "never" only when set explicitly). An
approval is permission to run now: when the submitting agent has not picked it up
(see service/presence.py) within the server's lapse time, it is cancelled, so an agent
that gave up long ago cannot run it next month and approvers see that nothing ran.

One algorithm for every database: each transaction takes the pending action that
expired first and denies it. On PostgreSQL the pick locks its row and skips rows
another replica holds (see `actions_repo.next_due`), so replicas sweeping one database
split the work; SQLite has one writer, so its sweeps never overlap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faramesh import audit
from faramesh.config import DEFAULT_APPROVAL_LAPSE, DEFAULT_APPROVAL_TIMEOUT
from faramesh.durations import humanize
from faramesh.errors import Conflict
from faramesh.model import Status
from faramesh.service.cancel import cancel_row
from faramesh.storage import Store
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories

__all__ = ["DEFAULT_APPROVAL_LAPSE", "DEFAULT_APPROVAL_TIMEOUT", "expire_due", "lapse_due", "next_expiry", "sweep_due"]

ACTOR = "system:expiry"
LAPSE_ACTOR = "system:lapse"
_PENDING = Status.PENDING_APPROVAL.value
_APPROVED = Status.APPROVED.value


Change = tuple[Any, int]  # the row after a deadline's change, and its audit seq


def sweep_due(
    store: Store, batch: int, step: Callable[[Connection], Change | None], on_done: Callable[[Any, int], None]
) -> int:
    """Run `step` (one due action's change, or None when none is due) up to `batch` times,
    each in its own transaction, calling `on_done(row, seq)` after each commit. Returns
    how many changed. The sweeper's deadlines (held expiry, approval lapse, execution
    lease) all go this way: one action a transaction, so a failure leaves the ones
    before it committed and announced."""
    done = 0
    for _ in range(batch):
        outcome = store.write(step)
        if outcome is None:
            break
        done += 1
        on_done(*outcome)
    return done


def expire_due(store: Store, now: float, batch: int, on_expired: Callable[[Any, int], None]) -> int:
    """Deny up to `batch` pending actions due at `now`, calling `on_expired(row, seq)` after
    each commit. Returns how many."""
    return sweep_due(store, batch, lambda conn: _expire_next(store, conn, now), on_expired)


def _expire_next(store: Store, conn: Connection, now: float) -> tuple[Any, int] | None:
    repos = Repositories.sql(conn)
    action_id = repos.actions.next_due(_PENDING, now)
    if action_id is None:
        return None
    row = repos.actions.get(action_id)
    if row is None or row.status != _PENDING or row.expires_at is None:
        return None
    reason = f"Approval expired: no decision within {humanize(round(row.expires_at - row.created_at, 3))}"
    values = {
        "status": Status.DENIED.value,
        "decided_by": ACTOR,
        "decision_reason": reason,
        "approval_token": None,
        "version": row.version + 1,
        "updated_at": now,
    }
    if not repos.actions.compare_and_set(action_id, statuses=[_PENDING], version=row.version, values=values):
        return None
    seq = audit.append(
        conn,
        event="action.expired",
        ts=now,
        action_id=action_id,
        actor=ACTOR,
        data={"status": Status.DENIED.value, "reason": reason},
    )
    store.notify(conn, type="action.expired", action_id=action_id, seq=seq)
    return repos.actions.get(action_id), seq


def lapse_due(store: Store, now: float, batch: int, on_lapsed: Callable[[Any, int], None]) -> int:
    """Cancel up to `batch` approvals not picked up by their lapse time, calling
    `on_lapsed(row, seq)` after each commit. Returns how many."""
    return sweep_due(store, batch, lambda conn: _lapse_next(store, conn, now), on_lapsed)


def _lapse_next(store: Store, conn: Connection, now: float) -> tuple[Any, int] | None:
    repos = Repositories.sql(conn)
    action_id = repos.actions.next_lapsed(_APPROVED, now)
    if action_id is None:
        return None
    row = repos.actions.get(action_id)
    if row is None or row.status != _APPROVED or row.picked_up_at is not None or row.lapses_at is None:
        return None
    # Nothing else updates an approved row before its pick-up, so updated_at is the approval.
    reason = (
        "Approval lapsed: the agent did not pick it up within "
        f"{humanize(round(row.lapses_at - row.updated_at, 3))} of the approval, so it was not run"
    )
    try:
        return cancel_row(conn, store, row, actor=LAPSE_ACTOR, reason=reason, now=now)
    except Conflict:  # picked up or decided meanwhile
        return None


def next_expiry(store: Store) -> float | None:
    """When the next pending action expires or unused approval lapses, if any does."""

    def read(conn: Connection) -> float | None:
        repos = Repositories.sql(conn)
        due = [
            repos.actions.earliest_expiry(_PENDING),
            repos.actions.earliest_lapse(_APPROVED),
        ]
        return min((d for d in due if d is not None), default=None)

    return store.read(read)

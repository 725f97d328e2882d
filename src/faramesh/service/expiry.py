"""Expiry: a pending action whose approval window has passed is denied.

One algorithm for every database: each transaction takes the pending action that
expired first and denies it. On PostgreSQL the pick locks its row and skips rows
another replica holds (see `actions_repo.next_due`), so replicas sweeping one database
split the work; SQLite has one writer, so its sweeps never overlap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faramesh import audit
from faramesh.model import Status
from faramesh.service.durations import humanize
from faramesh.storage import Store, actions_repo
from faramesh.storage.actions_repo import Connection

ACTOR = "system:expiry"
_PENDING = Status.PENDING_APPROVAL.value


def expire_due(store: Store, now: float, batch: int, on_expired: Callable[[Any, int], None]) -> int:
    """Deny up to `batch` pending actions due at `now`, calling `on_expired(row, seq)` after
    each commit. Returns how many."""
    expired = 0
    for _ in range(batch):
        outcome = store.write(lambda conn: _expire_next(store, conn, now))
        if outcome is None:
            break
        expired += 1
        on_expired(*outcome)
    return expired


def _expire_next(store: Store, conn: Connection, now: float) -> tuple[Any, int] | None:
    action_id = actions_repo.next_due(conn, _PENDING, now)
    if action_id is None:
        return None
    row = actions_repo.get(conn, action_id)
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
    if not actions_repo.compare_and_set(conn, action_id, statuses=[_PENDING], version=row.version, values=values):
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
    return actions_repo.get(conn, action_id), seq


def next_expiry(store: Store) -> float | None:
    """When the next pending action expires, if any does."""
    return store.read(lambda conn: actions_repo.earliest_expiry(conn, _PENDING))

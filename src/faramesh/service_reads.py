"""Reads the server and the dashboard need beside the Governor's own: the door they read through.

HTTP and dashboard code call these instead of opening a database connection; the
queries live in storage (faramesh.storage.dashboard_reads, faramesh.storage.audit_log)
and come back as typed values.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from faramesh import audit
from faramesh.events import Replay, replay_for
from faramesh.model import Identity
from faramesh.storage import dashboard_reads

if TYPE_CHECKING:
    from faramesh.service import Governor

__all__ = [
    "audit_event",
    "audit_position",
    "authenticate",
    "dashboard_identity",
    "missed_changes",
    "pending_count",
]


def authenticate(governor: Governor, secret: str) -> Identity | None:
    """The identity behind a presented API key; None when it is unknown or revoked."""
    return governor.authenticate(secret)


def refresh_key(governor: Governor, secret: str) -> None:
    """Re-read a remembered API key before its cache entry expires (see service/key_cache.py)."""
    governor.refresh_key(secret)


def dashboard_identity(governor: Governor, key_id: str) -> Identity | None:
    """The identity behind a dashboard session's key id, while that key may still use
    the dashboard: it exists, is not revoked and may decide (approver or admin)."""
    identity = governor.store.read(partial(dashboard_reads.key_identity, key_id=key_id))
    return identity if identity is not None and identity.can_decide else None


def pending_count(governor: Governor) -> int:
    """How many actions are waiting for a decision (the dashboard's badge, the metrics gauge)."""
    return governor.store.read(dashboard_reads.count_pending)


def audit_position(governor: Governor) -> int:
    """The seq of the newest audit record: a stream opened with it replays what follows."""
    return governor.store.read(audit.head)[0]


def audit_event(governor: Governor, seq: int) -> audit.AuditRecord | None:
    """The audit record with this seq, if any."""
    return governor.store.read(partial(audit.event_at, seq=seq))


def missed_changes(
    governor: Governor,
    identity: Identity,
    after: int,
    *,
    limit: int,
    action_id: str | None = None,
    keep_first: bool = False,
) -> Replay:
    """What `identity`'s event stream missed after the audit position `after` (see
    faramesh.events.replay_for)."""
    return replay_for(governor, identity, after, limit=limit, action_id=action_id, keep_first=keep_first)

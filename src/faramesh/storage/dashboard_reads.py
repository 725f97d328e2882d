"""Reads the dashboard and the server's gauges need beside the service's own: typed values, no rows.

The dashboard counts held actions on every page (and /metrics exports the same count),
and re-checks the key behind a session on every request.
"""

from __future__ import annotations

import orjson
from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from faramesh.model import Identity, Role, Status
from faramesh.storage.schema import actions, api_keys

__all__ = ["count_pending", "key_identity"]

# Built once: every dashboard page and every metrics scrape runs these.
_COUNT_PENDING = select(func.count()).select_from(actions).where(actions.c.status == Status.PENDING_APPROVAL.value)
_SELECT_KEY = select(api_keys.c.id, api_keys.c.role, api_keys.c.name, api_keys.c.agent_id, api_keys.c.groups).where(
    api_keys.c.id == bindparam("key_id"), api_keys.c.revoked_at.is_(None)
)


def count_pending(conn: Connection) -> int:
    """How many actions are waiting for a decision."""
    return int(conn.execute(_COUNT_PENDING).scalar_one())


def key_identity(conn: Connection, key_id: str) -> Identity | None:
    """The identity of an active key by its id; None when it is unknown or revoked."""
    row = conn.execute(_SELECT_KEY, {"key_id": key_id}).first()
    if row is None:
        return None
    return Identity(
        key_id=row.id,
        role=Role(row.role),
        name=row.name or "",
        agent_id=row.agent_id,
        groups=tuple(orjson.loads(row.groups or "[]")),
    )

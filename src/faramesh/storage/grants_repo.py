"""The grants table's SQL: standing grants and their use counter.

`faramesh.service.grants` decides what a grant allows and records every change in the
audit log; this module only moves rows. Every function takes the caller's connection,
so it runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Connection

from faramesh.storage.schema import grants

__all__ = ["Connection", "GrantRow", "candidates", "get", "insert", "list_grants", "revoke", "use"]

GrantRow = Any  # a row with the grants columns as attributes


def insert(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(grants.insert().values(**dict(values)))


def get(conn: Connection, grant_id: str) -> GrantRow | None:
    return conn.execute(select(grants).where(grants.c.id == grant_id)).first()


def list_grants(conn: Connection, *, active_at: float | None = None, limit: int = 500) -> list[GrantRow]:
    """Grants, newest first; with `active_at`, only those usable at that time."""
    query = select(grants).order_by(grants.c.created_at.desc(), grants.c.id).limit(limit)
    if active_at is not None:
        query = query.where(*_usable(active_at))
    return list(conn.execute(query).all())


def candidates(conn: Connection, *, tool: str, operation: str, agent_id: str, now: float) -> list[GrantRow]:
    """Usable grants for this tool, operation and agent, oldest first (the first that fits is used)."""
    query = (
        select(grants)
        .where(
            grants.c.tool == tool,
            grants.c.operation == operation,
            or_(grants.c.agent_id.is_(None), grants.c.agent_id == agent_id),
            *_usable(now),
        )
        .order_by(grants.c.created_at, grants.c.id)
    )
    return list(conn.execute(query).all())


def use(conn: Connection, grant_id: str, *, uses: int, now: float) -> bool:
    """Count one use, compare-and-set on the counter: False when the grant was used,
    revoked or expired meanwhile (another submit got the last use)."""
    result = conn.execute(
        update(grants).where(grants.c.id == grant_id, grants.c.uses == uses, *_usable(now)).values(uses=uses + 1)
    )
    return bool(result.rowcount == 1)


def revoke(conn: Connection, grant_id: str, *, now: float, by: str | None) -> bool:
    """Revoke a grant not yet revoked; False when it already was."""
    result = conn.execute(
        update(grants)
        .where(grants.c.id == grant_id, grants.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=by)
    )
    return bool(result.rowcount == 1)


def _usable(now: float) -> tuple[Any, ...]:
    return (
        grants.c.revoked_at.is_(None),
        grants.c.expires_at > now,
        or_(grants.c.max_uses.is_(None), grants.c.uses < grants.c.max_uses),
    )

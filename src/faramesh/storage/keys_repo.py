"""The api_keys table's SQL.

`faramesh.service.keys` decides who may create and revoke keys and records each change
in the audit log; `faramesh.keys` hashes and verifies secrets. This module only moves rows.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from faramesh.storage.rows import ApiKeyRow
from faramesh.storage.schema import api_keys

__all__ = [
    "Connection",
    "KeyRow",
    "SqlKeyStore",
    "active_among",
    "by_hash",
    "count_active",
    "get",
    "get_active",
    "insert",
    "is_active",
    "list_all",
    "revoke",
]

KeyRow = ApiKeyRow  # a row with the api_keys columns as attributes

# Built once: every request runs these, and prebuilt statements skip SQLAlchemy's per-call work.
_SELECT_BY_HASH = select(api_keys).where(api_keys.c.key_hash == bindparam("key_hash"))
_SELECT_BY_ID = select(api_keys).where(api_keys.c.id == bindparam("key_id"))
# FOR SHARE (PostgreSQL): a revocation waits for the transaction that read the key active
# to end, so the two are ordered one way or the other; SQLite has one writer already.
_IS_ACTIVE = (
    select(api_keys.c.id)
    .where(api_keys.c.id == bindparam("key_id"), api_keys.c.revoked_at.is_(None))
    .with_for_update(read=True)
)


def insert(
    conn: Connection,
    *,
    key_id: str,
    name: str,
    role: str,
    agent_id: str | None,
    groups_json: str,
    key_hash: str,
    prefix: str,
    created_at: float,
) -> None:
    conn.execute(
        api_keys.insert().values(
            id=key_id,
            name=name,
            role=role,
            agent_id=agent_id,
            groups=groups_json,
            key_hash=key_hash,
            prefix=prefix,
            created_at=created_at,
            revoked_at=None,
        )
    )


def revoke(conn: Connection, key_id: str, now: float) -> bool:
    """Mark the key revoked at `now`; False when it was already revoked or does not exist."""
    result = conn.execute(
        update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    return bool(result.rowcount)


def get(conn: Connection, key_id: str) -> KeyRow | None:
    return conn.execute(_SELECT_BY_ID, {"key_id": key_id}).first()


def get_active(conn: Connection, key_id: str) -> KeyRow | None:
    row = get(conn, key_id)
    return row if row is not None and row.revoked_at is None else None


def is_active(conn: Connection, key_id: str) -> bool:
    """Whether the key exists and is not revoked: one primary-key read, which holds the
    key row (shared) until the caller's transaction ends."""
    return conn.execute(_IS_ACTIVE, {"key_id": key_id}).first() is not None


def by_hash(conn: Connection, key_hash: str) -> KeyRow | None:
    return conn.execute(_SELECT_BY_HASH, {"key_hash": key_hash}).first()


def list_all(conn: Connection) -> list[KeyRow]:
    """Every key, oldest first."""
    return list(conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all())


def count_active(conn: Connection, role: str | None = None) -> int:
    query = select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None))
    if role is not None:
        query = query.where(api_keys.c.role == role)
    return len(conn.execute(query).all())


def active_among(conn: Connection, key_ids: set[str]) -> set[str]:
    """Which of these key ids exist and are not revoked."""
    wanted = sorted(key_ids)
    active: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = conn.execute(
            select(api_keys.c.id).where(api_keys.c.id.in_(chunk), api_keys.c.revoked_at.is_(None))
        ).all()
        active.update(r.id for r in rows)
    return active


class SqlKeyStore:
    """The statements above bound to one connection: a `KeyStore` (faramesh.storage.repositories)."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def insert(
        self,
        *,
        key_id: str,
        name: str,
        role: str,
        agent_id: str | None,
        groups_json: str,
        key_hash: str,
        prefix: str,
        created_at: float,
    ) -> None:
        insert(
            self.conn,
            key_id=key_id,
            name=name,
            role=role,
            agent_id=agent_id,
            groups_json=groups_json,
            key_hash=key_hash,
            prefix=prefix,
            created_at=created_at,
        )

    def revoke(self, key_id: str, now: float) -> bool:
        return revoke(self.conn, key_id, now)

    def get(self, key_id: str) -> KeyRow | None:
        return get(self.conn, key_id)

    def get_active(self, key_id: str) -> KeyRow | None:
        return get_active(self.conn, key_id)

    def is_active(self, key_id: str) -> bool:
        return is_active(self.conn, key_id)

    def by_hash(self, key_hash: str) -> KeyRow | None:
        return by_hash(self.conn, key_hash)

    def list_all(self) -> list[KeyRow]:
        return list_all(self.conn)

    def count_active(self, role: str | None = None) -> int:
        return count_active(self.conn, role)

    def active_among(self, key_ids: set[str]) -> set[str]:
        return active_among(self.conn, key_ids)

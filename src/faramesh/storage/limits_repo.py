"""The limit_usage table's SQL: what stateful limits (rate limits, budgets) have used.

`faramesh.service.limits` decides whether a limit trips; this module only counts and
records rows, and takes the PostgreSQL locks that keep replicas from overshooting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from faramesh.storage.schema import limit_usage

__all__ = ["Connection", "SqlLimitStore", "lock_buckets", "record", "release", "usage"]


def lock_buckets(conn: Connection, bucket_keys: Iterable[str]) -> None:
    """Hold the buckets for this transaction (PostgreSQL advisory locks; SQLite has one
    writer). Replicas then count and record usage one at a time per bucket, and the
    locks are taken in one order, so they cannot deadlock."""
    if conn.dialect.name != "postgresql":
        return
    for lock_key in sorted(set(bucket_keys)):
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": lock_key})


def usage(conn: Connection, *, limit_id: str, buckets: Sequence[str], since: float) -> tuple[int, float]:
    """(how many uses, their total amount) of the limit in these buckets after `since`."""
    count, total = conn.execute(
        select(func.count(), func.coalesce(func.sum(limit_usage.c.amount), 0.0)).where(
            limit_usage.c.limit_id == limit_id,
            limit_usage.c.bucket.in_(list(buckets)),
            limit_usage.c.at > since,
        )
    ).one()
    return int(count), float(total)


def record(conn: Connection, *, limit_id: str, bucket: str, amount: float, action_id: str, at: float) -> None:
    conn.execute(
        limit_usage.insert().values(limit_id=limit_id, bucket=bucket, amount=amount, action_id=action_id, at=at)
    )


def release(conn: Connection, action_id: str) -> None:
    """Forget the usage an action recorded (before it is re-reserved for edited params)."""
    conn.execute(limit_usage.delete().where(limit_usage.c.action_id == action_id))


class SqlLimitStore:
    """The statements above bound to one connection: a `LimitStore` (faramesh.storage.repositories)."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def lock_buckets(self, bucket_keys: Iterable[str]) -> None:
        lock_buckets(self.conn, bucket_keys)

    def usage(self, *, limit_id: str, buckets: Sequence[str], since: float) -> tuple[int, float]:
        return usage(self.conn, limit_id=limit_id, buckets=buckets, since=since)

    def record(self, *, limit_id: str, bucket: str, amount: float, action_id: str, at: float) -> None:
        record(self.conn, limit_id=limit_id, bucket=bucket, amount=amount, action_id=action_id, at=at)

    def release(self, action_id: str) -> None:
        release(self.conn, action_id)

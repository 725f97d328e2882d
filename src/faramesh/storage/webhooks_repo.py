"""The webhooks and webhook_deliveries tables' SQL: stored receivers and the delivery
log (which is also the retry queue).

`faramesh.service.webhooks` adds and removes receivers (and audits it);
`faramesh.notify` sends deliveries. This module only moves rows; every function takes
the caller's connection, so it runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from faramesh.storage.rows import DELIVERED, FAILED, PENDING, DeliveryRow, WebhookRow
from faramesh.storage.schema import webhook_deliveries, webhooks

__all__ = [
    "DELIVERED",
    "FAILED",
    "PENDING",
    "Connection",
    "DeliveryRow",
    "SqlWebhookStore",
    "WebhookRow",
    "claim",
    "count_pending",
    "delete_webhook",
    "due",
    "enqueue",
    "get_webhook",
    "insert_webhook",
    "latest_delivery",
    "list_deliveries",
    "list_webhooks",
    "next_due",
    "record_attempt",
]


# -- receivers -----------------------------------------------------------------------
def list_webhooks(conn: Connection) -> list[WebhookRow]:
    return list(conn.execute(select(webhooks).order_by(webhooks.c.created_at, webhooks.c.id)).all())


def get_webhook(conn: Connection, webhook_id: str) -> WebhookRow | None:
    return conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).first()


def insert_webhook(
    conn: Connection,
    *,
    webhook_id: str,
    url: str,
    secret: str,
    events_json: str,
    format: str,
    description: str,
    created_by: str | None,
    created_at: float,
) -> None:
    conn.execute(
        webhooks.insert().values(
            id=webhook_id,
            url=url,
            secret=secret,
            events=events_json,
            format=format,
            description=description,
            created_by=created_by,
            created_at=created_at,
        )
    )


def delete_webhook(conn: Connection, webhook_id: str) -> None:
    """Remove the receiver and fail its pending deliveries: nothing more goes out to it."""
    conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))
    conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.webhook_id == webhook_id, webhook_deliveries.c.status == PENDING)
        .values(status=FAILED, last_error="webhook removed")
    )


# -- deliveries ----------------------------------------------------------------------
def enqueue(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert deliveries; one already recorded for the same (webhook, event) is skipped,
    so server processes that all saw an event queue it once."""
    if not rows:
        return
    stmt: Any
    if conn.dialect.name == "postgresql":
        stmt = postgresql.insert(webhook_deliveries).on_conflict_do_nothing()
    elif conn.dialect.name == "sqlite":
        stmt = sqlite.insert(webhook_deliveries).on_conflict_do_nothing()
    else:  # pragma: no cover - only the two supported databases
        stmt = insert(webhook_deliveries)
    conn.execute(stmt, list(rows))


def due(conn: Connection, now: float, limit: int, exclude: Collection[str] = ()) -> list[DeliveryRow]:
    """Pending deliveries whose time has come, oldest first (skipping busy receivers)."""
    query = (
        select(webhook_deliveries)
        .where(webhook_deliveries.c.status == PENDING, webhook_deliveries.c.next_attempt_at <= now)
        .order_by(webhook_deliveries.c.next_attempt_at, webhook_deliveries.c.id)
        .limit(limit)
    )
    if exclude:
        query = query.where(webhook_deliveries.c.webhook_id.not_in(list(exclude)))
    return list(conn.execute(query).all())


def claim(conn: Connection, candidates: Sequence[DeliveryRow], now: float, lease: float) -> list[DeliveryRow]:
    """Take the candidates for one attempt: a compare-and-set that pushes next_attempt_at
    past the attempt's lease, so no other process sends the same delivery meanwhile."""
    claimed = []
    for row in candidates:
        result = conn.execute(
            update(webhook_deliveries)
            .where(
                webhook_deliveries.c.id == row.id,
                webhook_deliveries.c.status == PENDING,
                webhook_deliveries.c.attempts == row.attempts,
                webhook_deliveries.c.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + lease)
        )
        if result.rowcount == 1:
            claimed.append(row)
    return claimed


def record_attempt(
    conn: Connection,
    *,
    delivery_id: int,
    attempts_before: int,
    ok: bool,
    http_status: int | None,
    error: str | None,
    now: float,
    next_attempt_at: float | None,
) -> None:
    """Store one attempt's outcome; next_attempt_at None (and not ok) means give up."""
    values: dict[str, Any] = {"attempts": attempts_before + 1, "last_status": http_status, "last_error": error}
    if ok:
        values |= {"status": DELIVERED, "delivered_at": now, "last_error": None}
    elif next_attempt_at is None:
        values |= {"status": FAILED}
    else:
        values |= {"next_attempt_at": next_attempt_at}
    conn.execute(
        update(webhook_deliveries)
        .where(
            webhook_deliveries.c.id == delivery_id,
            webhook_deliveries.c.status == PENDING,
            webhook_deliveries.c.attempts == attempts_before,
        )
        .values(**values)
    )


def next_due(conn: Connection) -> float | None:
    value = conn.execute(
        select(func.min(webhook_deliveries.c.next_attempt_at)).where(webhook_deliveries.c.status == PENDING)
    ).scalar()
    return float(value) if value is not None else None


def list_deliveries(conn: Connection, webhook_id: str | None = None, limit: int = 50) -> list[DeliveryRow]:
    """The newest deliveries first: of one receiver, or of all when `webhook_id` is None."""
    query = select(webhook_deliveries).order_by(webhook_deliveries.c.id.desc()).limit(limit)
    if webhook_id is not None:
        query = query.where(webhook_deliveries.c.webhook_id == webhook_id)
    return list(conn.execute(query).all())


def latest_delivery(conn: Connection, webhook_id: str) -> DeliveryRow | None:
    found = list_deliveries(conn, webhook_id, limit=1)
    return found[0] if found else None


def count_pending(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(webhook_deliveries).where(webhook_deliveries.c.status == PENDING)
        ).scalar_one()
    )


class SqlWebhookStore:
    """The statements above bound to one connection: a `WebhookStore` (faramesh.storage.repositories)."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def list_webhooks(self) -> list[WebhookRow]:
        return list_webhooks(self.conn)

    def get_webhook(self, webhook_id: str) -> WebhookRow | None:
        return get_webhook(self.conn, webhook_id)

    def insert_webhook(
        self,
        *,
        webhook_id: str,
        url: str,
        secret: str,
        events_json: str,
        format: str,
        description: str,
        created_by: str | None,
        created_at: float,
    ) -> None:
        insert_webhook(
            self.conn,
            webhook_id=webhook_id,
            url=url,
            secret=secret,
            events_json=events_json,
            format=format,
            description=description,
            created_by=created_by,
            created_at=created_at,
        )

    def delete_webhook(self, webhook_id: str) -> None:
        delete_webhook(self.conn, webhook_id)

    def enqueue(self, rows: Sequence[dict[str, Any]]) -> None:
        enqueue(self.conn, rows)

    def due(self, now: float, limit: int, exclude: Collection[str] = ()) -> list[DeliveryRow]:
        return due(self.conn, now, limit, exclude)

    def claim(self, candidates: Sequence[DeliveryRow], now: float, lease: float) -> list[DeliveryRow]:
        return claim(self.conn, candidates, now, lease)

    def record_attempt(
        self,
        *,
        delivery_id: int,
        attempts_before: int,
        ok: bool,
        http_status: int | None,
        error: str | None,
        now: float,
        next_attempt_at: float | None,
    ) -> None:
        record_attempt(
            self.conn,
            delivery_id=delivery_id,
            attempts_before=attempts_before,
            ok=ok,
            http_status=http_status,
            error=error,
            now=now,
            next_attempt_at=next_attempt_at,
        )

    def next_due(self) -> float | None:
        return next_due(self.conn)

    def list_deliveries(self, webhook_id: str | None = None, limit: int = 50) -> list[DeliveryRow]:
        return list_deliveries(self.conn, webhook_id, limit)

    def latest_delivery(self, webhook_id: str) -> DeliveryRow | None:
        return latest_delivery(self.conn, webhook_id)

    def count_pending(self) -> int:
        return count_pending(self.conn)

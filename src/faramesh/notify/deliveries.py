"""Stored webhooks and the delivery log (which is also the retry queue).

Every function takes the caller's connection, so it runs inside the caller's
transaction (`Store.read` / `Store.write`).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from faramesh import audit
from faramesh.errors import NotFound
from faramesh.notify.webhooks import Webhook, WebhookSpec
from faramesh.storage.schema import webhook_deliveries, webhooks

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


def _row_to_webhook(row: Any) -> Webhook:
    return Webhook(
        id=row.id,
        url=row.url,
        secret=row.secret,
        events=tuple(orjson.loads(row.events)),
        format=row.format,
        description=row.description or "",
        source="api",
        created_at=float(row.created_at),
        created_by=row.created_by,
    )


def list_webhooks(conn: Connection) -> list[Webhook]:
    rows = conn.execute(select(webhooks).order_by(webhooks.c.created_at, webhooks.c.id)).all()
    return [_row_to_webhook(r) for r in rows]


def create_webhook(conn: Connection, spec: WebhookSpec, *, actor: str | None, now: float) -> Webhook:
    hook_id = secrets.token_hex(8)
    conn.execute(
        webhooks.insert().values(
            id=hook_id,
            url=spec.url,
            secret=spec.secret,
            events=orjson.dumps(list(spec.events)).decode(),
            format=spec.format,
            description=spec.description,
            created_by=actor,
            created_at=now,
        )
    )
    audit.append(
        conn,
        event="webhook.created",
        ts=now,
        actor=actor,
        data={"webhook_id": hook_id, "url": spec.url, "events": list(spec.events), "format": spec.format},
    )
    return Webhook(
        id=hook_id,
        url=spec.url,
        secret=spec.secret,
        events=spec.events,
        format=spec.format,
        description=spec.description,
        created_at=now,
        created_by=actor,
    )


def delete_webhook(conn: Connection, webhook_id: str, *, actor: str | None, now: float) -> Webhook:
    row = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).first()
    if row is None:
        raise NotFound(f"no webhook with id {webhook_id!r}", field="id")
    conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))
    # Nothing more goes out to a removed receiver.
    conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.webhook_id == webhook_id, webhook_deliveries.c.status == PENDING)
        .values(status=FAILED, last_error="webhook removed")
    )
    audit.append(conn, event="webhook.deleted", ts=now, actor=actor, data={"webhook_id": webhook_id, "url": row.url})
    return _row_to_webhook(row)


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


def due(conn: Connection, now: float, limit: int, exclude: Collection[str] = ()) -> list[Any]:
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


def claim(conn: Connection, candidates: Sequence[Any], now: float, lease: float) -> list[Any]:
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


def delivery_to_dict(row: Any) -> dict[str, Any]:
    return {
        "id": int(row.id),
        "webhook_id": row.webhook_id,
        "event": row.event,
        "event_seq": int(row.event_seq),
        "action_id": row.action_id,
        "status": row.status,
        "attempts": int(row.attempts),
        "last_status": row.last_status,
        "last_error": row.last_error,
        "next_attempt_at": float(row.next_attempt_at) if row.status == PENDING else None,
        "created_at": float(row.created_at),
        "delivered_at": float(row.delivered_at) if row.delivered_at is not None else None,
    }


def list_deliveries(conn: Connection, webhook_id: str, limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(webhook_deliveries)
        .where(webhook_deliveries.c.webhook_id == webhook_id)
        .order_by(webhook_deliveries.c.id.desc())
        .limit(limit)
    ).all()
    return [delivery_to_dict(r) for r in rows]

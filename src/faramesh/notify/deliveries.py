"""Stored webhooks as `Webhook`s, and the delivery log (which is also the retry queue).

The SQL is in `faramesh.storage.webhooks_repo`; adding and removing stored webhooks is
the service's job (`faramesh.service.webhooks`). The delivery functions take the
caller's connection, so they run inside the caller's transaction (`Store.read` /
`Store.write`).
"""

from __future__ import annotations

from typing import Any

import orjson

from faramesh.notify.webhooks import Webhook
from faramesh.storage.webhooks_repo import (
    DELIVERED,
    FAILED,
    PENDING,
    Connection,
    claim,
    due,
    enqueue,
    next_due,
    record_attempt,
)
from faramesh.storage.webhooks_repo import list_deliveries as _delivery_rows
from faramesh.storage.webhooks_repo import list_webhooks as _webhook_rows

__all__ = [
    "DELIVERED",
    "FAILED",
    "PENDING",
    "claim",
    "delivery_to_dict",
    "due",
    "enqueue",
    "list_deliveries",
    "list_webhooks",
    "next_due",
    "record_attempt",
    "row_to_webhook",
]


def row_to_webhook(row: Any) -> Webhook:
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
    return [row_to_webhook(r) for r in _webhook_rows(conn)]


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
    return [delivery_to_dict(r) for r in _delivery_rows(conn, webhook_id, limit)]

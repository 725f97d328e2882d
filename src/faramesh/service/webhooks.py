"""Stored webhooks: the only code that adds or removes one, and records it in the audit log.

Receivers configured in a --webhooks file live in memory and never pass through here.
The rows are moved by the `WebhookStore` (`faramesh.storage.repositories`);
`faramesh.notify` turns them into its `Webhook` and sends the deliveries.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from faramesh import audit
from faramesh.errors import NotFound
from faramesh.model import Identity
from faramesh.storage import Store
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories
from faramesh.validation import refuse_nul


class WebhookFields(Protocol):
    """A checked receiver (faramesh.notify.webhooks.WebhookSpec has these fields)."""

    @property
    def url(self) -> str: ...
    @property
    def secret(self) -> str: ...
    @property
    def events(self) -> Sequence[str]: ...
    @property
    def format(self) -> str: ...
    @property
    def description(self) -> str: ...


def create_webhook(store: Store, spec: WebhookFields, *, actor: str | Identity | None, now: float | None = None) -> Any:
    """Store a receiver; returns its row (with the secret, shown to the creator once)."""
    ts = time.time() if now is None else now
    hook_id = secrets.token_hex(8)

    def txn(conn: Connection) -> Any:
        repos = Repositories.sql(conn)
        repos.webhooks.insert_webhook(
            webhook_id=hook_id,
            url=spec.url,
            secret=spec.secret,
            events_json=orjson.dumps(list(spec.events)).decode(),
            format=spec.format,
            description=spec.description,
            created_by=actor.label if isinstance(actor, Identity) else actor,
            created_at=ts,
        )
        audit.append(
            conn,
            event="webhook.created",
            ts=ts,
            actor=actor,
            data={"webhook_id": hook_id, "url": spec.url, "events": list(spec.events), "format": spec.format},
        )
        return repos.webhooks.get_webhook(hook_id)

    return store.write(txn)


def delete_webhook(store: Store, webhook_id: str, *, actor: str | Identity | None, now: float | None = None) -> Any:
    """Remove a stored receiver (its pending deliveries fail); returns the removed row."""
    refuse_nul(webhook_id, "id")
    ts = time.time() if now is None else now

    def txn(conn: Connection) -> Any:
        repos = Repositories.sql(conn)
        row = repos.webhooks.get_webhook(webhook_id)
        if row is None:
            raise NotFound(f"no webhook with id {webhook_id!r}", field="id")
        repos.webhooks.delete_webhook(webhook_id)
        audit.append(conn, event="webhook.deleted", ts=ts, actor=actor, data={"webhook_id": webhook_id, "url": row.url})
        return row

    return store.write(txn)


def list_webhooks(store: Store) -> list[Any]:
    """The stored receivers' rows, oldest first."""
    return store.read(lambda conn: Repositories.sql(conn).webhooks.list_webhooks())


def deliveries(store: Store, webhook_id: str | None = None, limit: int = 50) -> list[Any]:
    """The newest delivery rows first: of one receiver, or of all."""
    return store.read(lambda conn: Repositories.sql(conn).webhooks.list_deliveries(webhook_id, limit))


@dataclass(frozen=True)
class Overview:
    latest: dict[str, Any]  # webhook id -> its newest delivery row (or None)
    recent: list[Any]  # the newest delivery rows overall
    waiting: int  # deliveries still pending


def overview(store: Store, webhook_ids: Sequence[str], recent: int) -> Overview:
    """What the admin page shows of the delivery log, in one read."""

    def read(conn: Connection) -> Overview:
        repos = Repositories.sql(conn)
        latest = {hook_id: repos.webhooks.latest_delivery(hook_id) for hook_id in webhook_ids}
        return Overview(latest, repos.webhooks.list_deliveries(None, recent), repos.webhooks.count_pending())

    return store.read(read)

"""The backends the repository contract runs on, and row builders for its tests.

`RepoBackend.transaction()` yields a `Repositories` in one transaction: committed when
the block ends, rolled back when it raises. SQLite is a real file migrated with
`Store.upgrade()`; PostgreSQL a fresh database (tests/conftest.py); memory a
`MemoryDatabase`. One database serves a whole test module and is emptied before each test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from faramesh.storage import Store
from faramesh.storage.memory import MemoryDatabase
from faramesh.storage.repositories import Repositories
from faramesh.storage.schema import (
    GENESIS_HASH,
    actions,
    api_keys,
    audit_head,
    audit_log,
    limit_usage,
    webhook_deliveries,
    webhooks,
)
from tests.conftest import fresh_database

CONTRACT_BACKENDS = ("sqlite", "postgresql", "memory")
_TABLES = (actions, api_keys, audit_log, limit_usage, webhooks, webhook_deliveries)


class RepoBackend:
    """One backend of the contract: a database and its transactions."""

    def __init__(self, name: str, store: Store | None) -> None:
        self.name = name
        self.store = store
        self.memory = MemoryDatabase()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Repositories]:
        if self.store is None:
            with self.memory.transaction() as repos:
                yield repos
            return
        with self.store.engine.begin() as conn:
            yield Repositories.sql(conn)

    def empty(self) -> None:
        """Start from empty tables and an empty audit chain."""
        if self.store is None:
            self.memory = MemoryDatabase()
            return
        with self.store.engine.begin() as conn:
            for table in _TABLES:
                conn.execute(sa.delete(table))
            conn.execute(sa.update(audit_head).values(seq=0, hash=GENESIS_HASH))


@contextlib.contextmanager
def open_backend(name: str, directory: Path) -> Iterator[RepoBackend]:
    if name == "memory":
        yield RepoBackend(name, None)
        return
    with fresh_database(name, directory, "contract") as url:
        store = Store(url)
        try:
            store.upgrade()
            yield RepoBackend(name, store)
        finally:
            store.close()


def action(action_id: str, **columns: Any) -> dict[str, Any]:
    """The columns of a new action: a held call of shell.run by agent-1, created at t=1000."""
    return {
        "id": action_id,
        "status": "pending_approval",
        "decision": "require_approval",
        "reason": "needs a person",
        "risk_level": "high",
        "rule_id": "hold-shell",
        "policy_hash": "p" * 64,
        "request_hash": "r" * 64,
        "submitted_hash": "r" * 64,
        "tool": "shell",
        "operation": "run",
        "params": '{"cmd":"ls"}',
        "context": "{}",
        "agent_id": "agent-1",
        "submitted_by": "key-1",
        "created_at": 1000.0,
        "updated_at": 1000.0,
    } | columns


def key(key_id: str, **columns: Any) -> dict[str, Any]:
    """The arguments of KeyStore.insert for a new key."""
    return {
        "key_id": key_id,
        "name": f"key {key_id}",
        "role": "agent",
        "agent_id": None,
        "groups_json": "[]",
        "key_hash": f"hash-{key_id}",
        "prefix": f"fm_{key_id}"[:16],
        "created_at": 1000.0,
    } | columns


def webhook(webhook_id: str, **columns: Any) -> dict[str, Any]:
    """The arguments of WebhookStore.insert_webhook for a new receiver."""
    return {
        "webhook_id": webhook_id,
        "url": f"https://hooks.example/{webhook_id}",
        "secret": "s3cret",
        "events_json": '["*"]',
        "format": "json",
        "description": "",
        "created_by": "key-admin",
        "created_at": 1000.0,
    } | columns


def delivery(webhook_id: str, event_seq: int, **columns: Any) -> dict[str, Any]:
    """A row for WebhookStore.enqueue: a pending delivery due at t=1000."""
    return {
        "webhook_id": webhook_id,
        "event": "action.approved",
        "event_seq": event_seq,
        "action_id": f"act-{event_seq}",
        "payload": f'{{"seq":{event_seq}}}',
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": 1000.0,
        "created_at": 1000.0,
    } | columns


def record(seq: int, prev_hash: str, **columns: Any) -> dict[str, Any]:
    """A sealed-looking audit row for AuditLog.write_record (the chain's hashing is not
    the repository's business)."""
    return {
        "seq": seq,
        "ts": 1000.0 + seq,
        "event": "action.submitted",
        "action_id": f"act-{seq}",
        "actor": "key-1",
        "data": "{}",
        "prev_hash": prev_hash,
        "hash": f"{seq:064x}",
    } | columns

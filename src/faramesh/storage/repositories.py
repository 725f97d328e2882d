"""Typed repositories: what the layers above may ask of each table, and one value that
holds them for one transaction.

Each protocol mirrors the statements of one SQL module, without the connection:

| protocol | SQL (bound to a connection) | in memory |
|---|---|---|
| `ActionStore` | `actions_repo.SqlActionStore` | `memory.MemoryActionStore` |
| `KeyStore` | `keys_repo.SqlKeyStore` | `memory.MemoryKeyStore` |
| `LimitStore` | `limits_repo.SqlLimitStore` | `memory.MemoryLimitStore` |
| `WebhookStore` | `webhooks_repo.SqlWebhookStore` | `memory.MemoryWebhookStore` |
| `AuditLog` | `audit_log.SqlAuditLog` | `memory.MemoryAuditLog` |

`Repositories.sql(conn)` binds the SQL ones to the caller's connection, so they run in
the caller's transaction (`Store.read` / `Store.write`); `Repositories.memory(db)` gives
the in-memory twins over a `MemoryDatabase`. tests/storage/test_repository_contract*.py
holds both to one behaviour on SQLite, PostgreSQL and memory.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from faramesh.model import Action
from faramesh.storage.actions_repo import SqlActionStore
from faramesh.storage.audit_log import SqlAuditLog
from faramesh.storage.keys_repo import SqlKeyStore
from faramesh.storage.limits_repo import SqlLimitStore
from faramesh.storage.rows import ActionFilter, ApiKeyRow, AuditRow, DeliveryRow, SameCall, WebhookRow
from faramesh.storage.webhooks_repo import SqlWebhookStore

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from faramesh.storage.memory import MemoryDatabase

__all__ = ["ActionStore", "AuditLog", "KeyStore", "LimitStore", "Repositories", "WebhookStore"]


class ActionStore(Protocol):
    """The actions table: load, insert, compare-and-set, list and the expiry picks."""

    def get(self, action_id: str) -> Action | None: ...

    def current_status(self, action_id: str) -> str | None: ...

    def get_for_update(self, action_id: str) -> Action | None:
        """The row, locked until the transaction ends."""
        ...

    def find_idempotent(self, submitted_by: str, key: str) -> Action | None:
        """The action this key already submitted under this Idempotency-Key, if any."""
        ...

    def find_reattachable(self, agent_id: str, rhash: str, statuses: Collection[str]) -> Action | None:
        """The newest action of this agent with this submitted hash, now in one of `statuses`."""
        ...

    def find_same_call_in(self, agent_id: str, rhash: str, status: str) -> SameCall | None:
        """An action of this agent with this submitted hash now in `status`, if any."""
        ...

    def touch_presence(self, action_id: str, now: float) -> None:
        """Set agent_seen_at; no version bump."""
        ...

    def insert(self, values: Mapping[str, Any]) -> None:
        """Insert a new action; a duplicate id or Idempotency-Key raises `DuplicateRow`."""
        ...

    def insert_finding_unknown_twin(self, values: Mapping[str, Any]) -> str | None:
        """`insert`, and the id of another action of this agent with the same submitted
        hash now `outcome_unknown`, if any (one statement on SQL databases)."""
        ...

    def compare_and_set(
        self, action_id: str, *, statuses: Collection[str], version: int, values: Mapping[str, Any]
    ) -> bool:
        """Update the row only if it is still in one of `statuses` at `version`; True if it was."""
        ...

    def list_page(self, where: ActionFilter, *, limit: int, cursor: int | None = None, offset: int = 0) -> list[Action]:
        """Up to `limit` matching actions, newest first (by seq), below `cursor` when given."""
        ...

    def next_due(self, status: str, now: float) -> str | None:
        """The id of the `status` action whose expiry passed first (held for this transaction)."""
        ...

    def earliest_expiry(self, status: str) -> float | None: ...

    def next_lapsed(self, status: str, now: float) -> str | None:
        """The id of the `status` action whose pick-up deadline passed first, not picked up."""
        ...

    def earliest_lapse(self, status: str) -> float | None: ...

    def next_lease_due(self, status: str, now: float) -> str | None:
        """The id of the `status` action whose execution lease ran out first."""
        ...

    def earliest_lease(self, status: str) -> float | None: ...


class KeyStore(Protocol):
    """The api_keys table."""

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
    ) -> None: ...

    def revoke(self, key_id: str, now: float) -> bool:
        """Mark the key revoked at `now`; False when it was already revoked or does not exist."""
        ...

    def get(self, key_id: str) -> ApiKeyRow | None: ...

    def get_active(self, key_id: str) -> ApiKeyRow | None: ...

    def is_active(self, key_id: str) -> bool: ...

    def by_hash(self, key_hash: str) -> ApiKeyRow | None:
        """The key with this hash, revoked or not (callers check revoked_at)."""
        ...

    def list_all(self) -> list[ApiKeyRow]:
        """Every key, oldest first."""
        ...

    def count_active(self, role: str | None = None) -> int: ...

    def active_among(self, key_ids: set[str]) -> set[str]:
        """Which of these key ids exist and are not revoked."""
        ...


class LimitStore(Protocol):
    """The limit_usage table: what rate limits and budgets have used."""

    def lock_buckets(self, bucket_keys: Iterable[str]) -> None:
        """Hold the buckets until the transaction ends."""
        ...

    def usage(self, *, limit_id: str, buckets: Sequence[str], since: float) -> tuple[int, float]:
        """(how many uses, their total amount) of the limit in these buckets after `since`."""
        ...

    def record(self, *, limit_id: str, bucket: str, amount: float, action_id: str, at: float) -> None: ...

    def release(self, action_id: str) -> None:
        """Forget the usage an action recorded."""
        ...


class WebhookStore(Protocol):
    """The webhooks table (receivers) and webhook_deliveries (the delivery log and retry queue)."""

    def list_webhooks(self) -> list[WebhookRow]: ...

    def get_webhook(self, webhook_id: str) -> WebhookRow | None: ...

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
    ) -> None: ...

    def delete_webhook(self, webhook_id: str) -> None:
        """Remove the receiver and fail its pending deliveries."""
        ...

    def enqueue(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert deliveries, skipping one already recorded for the same (webhook, event)."""
        ...

    def due(self, now: float, limit: int, exclude: Collection[str] = ()) -> list[DeliveryRow]:
        """Pending deliveries whose time has come, oldest first, not to the `exclude` receivers."""
        ...

    def claim(self, candidates: Sequence[DeliveryRow], now: float, lease: float) -> list[DeliveryRow]:
        """The candidates this caller took for one attempt (compare-and-set on attempts)."""
        ...

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
        """Store one attempt's outcome; next_attempt_at None (and not ok) means give up."""
        ...

    def next_due(self) -> float | None: ...

    def list_deliveries(self, webhook_id: str | None = None, limit: int = 50) -> list[DeliveryRow]:
        """The newest deliveries first: of one receiver, or of all."""
        ...

    def latest_delivery(self, webhook_id: str) -> DeliveryRow | None: ...

    def count_pending(self) -> int: ...


class AuditLog(Protocol):
    """The audit_log table and its chain head."""

    def lock_head(self) -> tuple[int, str]:
        """The chain head's seq and hash, held until the transaction ends."""
        ...

    def write_record(self, row: dict[str, Any]) -> None:
        """Insert a sealed record and make it the chain head."""
        ...

    def read_head(self) -> tuple[int, str]: ...

    def record_ts(self, seq: int) -> float | None: ...

    def record_at(self, seq: int) -> AuditRow | None: ...

    def action_records(self, action_id: str) -> Sequence[AuditRow]:
        """One action's records, in seq order."""
        ...

    def records_after(self, seq: int, limit: int) -> Sequence[AuditRow]: ...

    def seq_of_hash(self, digest: str) -> int | None: ...

    def stream_records(
        self, *, since_seq: int | None = None, since_ts: float | None = None, action_id: str | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """Records as (seq, ts, event, action_id, actor, data, prev_hash, hash), in seq order."""
        ...


@dataclass(frozen=True, slots=True)
class Repositories:
    """The repositories of one transaction (a unit of work)."""

    actions: ActionStore
    keys: KeyStore
    limits: LimitStore
    webhooks: WebhookStore
    audit: AuditLog

    @classmethod
    def sql(cls, conn: Connection) -> Repositories:
        """The SQL repositories, running their statements on `conn` (in its transaction)."""
        return cls(
            SqlActionStore(conn), SqlKeyStore(conn), SqlLimitStore(conn), SqlWebhookStore(conn), SqlAuditLog(conn)
        )

    @classmethod
    def memory(cls, db: MemoryDatabase) -> Repositories:
        """The in-memory repositories over `db` (use them inside `db.transaction()`)."""
        from faramesh.storage import memory

        return cls(
            memory.MemoryActionStore(db),
            memory.MemoryKeyStore(db),
            memory.MemoryLimitStore(db),
            memory.MemoryWebhookStore(db),
            memory.MemoryAuditLog(db),
        )

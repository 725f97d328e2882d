"""In-memory twins of the SQL repositories, for tests and tools that need no database.

`MemoryDatabase` holds the tables as dicts. `transaction()` takes its lock, hands out
the repositories (`Repositories.memory(db)`) and, when the block raises, puts every
table back as it was: a snapshot and restore, as a rollback would. Each table keeps the
rules the schema enforces: primary keys and unique constraints (a breach raises
`DuplicateRow`, as the database does), NOT NULL columns (the same error), the column
defaults, floats for Float columns and a counter for autoincrement keys. Statements
behave like their SQL in `actions_repo`, `keys_repo`, `limits_repo`, `webhooks_repo`
and `audit_log`; tests/storage/test_repository_contract*.py runs the same tests on
both, and checks these table descriptions against `faramesh.storage.schema`.

Row locks (FOR UPDATE, SKIP LOCKED, advisory locks) have nothing to do here: one
transaction at a time holds the lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from faramesh.model import Action, Status
from faramesh.storage.errors import DuplicateRow
from faramesh.storage.repositories import Repositories
from faramesh.storage.rows import (
    DELIVERED,
    FAILED,
    PENDING,
    ActionFilter,
    ApiKeyRow,
    AuditRow,
    DeliveryRow,
    SameCall,
    WebhookRow,
)

__all__ = [
    "GENESIS_HASH",
    "TABLES",
    "MemoryActionStore",
    "MemoryAuditLog",
    "MemoryDatabase",
    "MemoryKeyStore",
    "MemoryLimitStore",
    "MemoryWebhookStore",
    "TableSpec",
]

T = TypeVar("T")
R = TypeVar("R")

# The hash an empty audit chain starts from (faramesh.storage.schema.GENESIS_HASH).
GENESIS_HASH = "0" * 64
# Seconds of slack when list_page turns `until` into a starting seq (as actions_repo does).
_TIME_SLACK = 60.0


# -- rows ------------------------------------------------------------------------------
# The actions columns in the table's order; an action is read back as a `faramesh.model.Action`.
_ACTION_COLUMNS = (
    "seq",
    "id",
    "status",
    "decision",
    "reason",
    "risk_level",
    "rule_id",
    "policy_hash",
    "request_hash",
    "tool",
    "operation",
    "params",
    "context",
    "original_params",
    "agent_id",
    "shadow_decision",
    "shadow_rule_id",
    "shadow_policy_hash",
    "submitted_by",
    "idempotency_key",
    "approval_token",
    "approval_quorum",
    "approval_groups",
    "expires_at",
    "decided_by",
    "decision_reason",
    "result",
    "error",
    "version",
    "created_at",
    "updated_at",
    "submitted_hash",
    "agent_seen_at",
    "picked_up_at",
    "lapses_at",
    "permit",
    "permit_expires_at",
    "started_at",
    "lease_expires_at",
)


class MemoryApiKeyRow(NamedTuple):
    id: str
    name: str
    role: str
    agent_id: str | None
    groups: str
    key_hash: str
    prefix: str
    created_at: float
    revoked_at: float | None


class MemoryAuditRow(NamedTuple):
    seq: int
    ts: float
    event: str
    action_id: str | None
    actor: str | None
    data: str
    prev_hash: str
    hash: str


class MemoryUsageRow(NamedTuple):
    id: int
    limit_id: str
    bucket: str
    amount: float
    action_id: str
    at: float


class MemoryWebhookRow(NamedTuple):
    id: str
    url: str
    secret: str
    events: str
    format: str
    description: str
    created_by: str | None
    created_at: float


class MemoryDeliveryRow(NamedTuple):
    id: int
    webhook_id: str
    event: str
    event_seq: int
    action_id: str | None
    payload: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: float
    created_at: float
    delivered_at: float | None


# -- tables ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TableSpec(Generic[R]):
    """What the schema says about one table, for the memory twin to enforce."""

    name: str
    make: Callable[..., R]  # the row type; its fields are the table's columns, in order
    fields: tuple[str, ...]
    key: str  # the primary key column
    autoincrement: bool
    not_null: frozenset[str]
    defaults: Mapping[str, Any]  # values of NOT NULL columns left out of an insert
    unique: tuple[tuple[str, ...], ...]  # besides the primary key
    floats: frozenset[str]  # Float columns: stored as float, as the databases return them


def _spec(
    name: str,
    make: Any,
    *,
    fields: tuple[str, ...] | None = None,
    key: str,
    autoincrement: bool = False,
    not_null: Iterable[str],
    defaults: Mapping[str, Any] | None = None,
    unique: tuple[tuple[str, ...], ...] = (),
    floats: Iterable[str] = (),
) -> TableSpec[Any]:
    return TableSpec(
        name=name,
        make=make,
        fields=fields or tuple(make._fields),
        key=key,
        autoincrement=autoincrement,
        not_null=frozenset(not_null) | {key},
        defaults=dict(defaults or {}),
        unique=unique,
        floats=frozenset(floats),
    )


ACTIONS = _spec(
    "actions",
    Action,
    fields=_ACTION_COLUMNS,
    key="seq",
    autoincrement=True,
    not_null=(
        "id",
        "status",
        "decision",
        "reason",
        "risk_level",
        "policy_hash",
        "request_hash",
        "tool",
        "operation",
        "params",
        "context",
        "agent_id",
        "submitted_by",
        "approval_quorum",
        "version",
        "created_at",
        "updated_at",
    ),
    defaults={"approval_quorum": 1, "version": 1},
    unique=(("id",), ("submitted_by", "idempotency_key")),
    floats=(
        "expires_at",
        "created_at",
        "updated_at",
        "agent_seen_at",
        "picked_up_at",
        "lapses_at",
        "permit_expires_at",
        "started_at",
        "lease_expires_at",
    ),
)
API_KEYS = _spec(
    "api_keys",
    MemoryApiKeyRow,
    key="id",
    not_null=("name", "role", "groups", "key_hash", "prefix", "created_at"),
    defaults={"name": "", "groups": "[]"},
    unique=(("key_hash",),),
    floats=("created_at", "revoked_at"),
)
AUDIT_LOG = _spec(
    "audit_log",
    MemoryAuditRow,
    key="seq",
    not_null=("ts", "event", "data", "prev_hash", "hash"),
    floats=("ts",),
)
LIMIT_USAGE = _spec(
    "limit_usage",
    MemoryUsageRow,
    key="id",
    autoincrement=True,
    not_null=("limit_id", "bucket", "amount", "action_id", "at"),
    floats=("amount", "at"),
)
WEBHOOKS = _spec(
    "webhooks",
    MemoryWebhookRow,
    key="id",
    not_null=("url", "secret", "events", "format", "description", "created_at"),
    defaults={"description": ""},
    floats=("created_at",),
)
WEBHOOK_DELIVERIES = _spec(
    "webhook_deliveries",
    MemoryDeliveryRow,
    key="id",
    autoincrement=True,
    not_null=("webhook_id", "event", "event_seq", "payload", "status", "attempts", "next_attempt_at", "created_at"),
    defaults={"attempts": 0},
    unique=(("webhook_id", "event_seq"),),
    floats=("next_attempt_at", "created_at", "delivered_at"),
)
TABLES: dict[str, TableSpec[Any]] = {
    spec.name: spec for spec in (ACTIONS, API_KEYS, AUDIT_LOG, LIMIT_USAGE, WEBHOOKS, WEBHOOK_DELIVERIES)
}


def _violation(table: str, message: str, values: Mapping[str, Any]) -> DuplicateRow:
    """The error the database raises for a broken constraint (IntegrityError)."""
    return DuplicateRow(f"INSERT/UPDATE {table}", dict(values), ValueError(message))


class _Table(Generic[R]):
    """One table: rows (as column dicts, never changed in place) by primary key."""

    def __init__(self, spec: TableSpec[R]) -> None:
        self.spec = spec
        self.rows: dict[Any, dict[str, Any]] = {}
        self.last_id = 0

    # -- transactions
    def snapshot(self) -> tuple[dict[Any, dict[str, Any]], int]:
        return dict(self.rows), self.last_id

    def restore(self, saved: tuple[dict[Any, dict[str, Any]], int]) -> None:
        rows, self.last_id = saved
        self.rows = dict(rows)

    # -- reads
    def row(self, values: Mapping[str, Any]) -> R:
        return self.spec.make(**values)

    def scan(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows.values())

    def first(self, **equal: Any) -> dict[str, Any] | None:
        for values in self.rows.values():
            if all(values[name] == want for name, want in equal.items()):
                return values
        return None

    # -- writes
    def insert(self, values: Mapping[str, Any], *, skip_conflict: bool = False) -> dict[str, Any] | None:
        """Add a row; None (nothing added) when `skip_conflict` and a unique key is taken."""
        spec = self.spec
        self._known(values)
        new = {name: values.get(name, spec.defaults.get(name)) for name in spec.fields}
        if spec.autoincrement and new[spec.key] is None:
            new[spec.key] = self.last_id + 1
        self._coerce(new)
        self._check_not_null(new)
        if self._conflict(new, None):
            if skip_conflict:
                return None
            raise _violation(spec.name, "UNIQUE constraint failed", new)
        if spec.autoincrement:
            self.last_id = max(self.last_id, int(new[spec.key]))
        self.rows[new[spec.key]] = new
        return new

    def update(self, old: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        spec = self.spec
        self._known(values)
        new = {**old, **values}
        self._coerce(new)
        self._check_not_null(new)
        key = old[spec.key]
        if self._conflict(new, key):
            raise _violation(spec.name, "UNIQUE constraint failed", new)
        if new[spec.key] != key:
            del self.rows[key]
        self.rows[new[spec.key]] = new

    def delete(self, old: Mapping[str, Any]) -> None:
        self.rows.pop(old[self.spec.key], None)

    def _known(self, values: Mapping[str, Any]) -> None:
        unknown = set(values) - set(self.spec.fields)
        if unknown:
            raise ValueError(f"{self.spec.name} has no columns {sorted(unknown)}")

    def _coerce(self, row: dict[str, Any]) -> None:
        for name in self.spec.floats:
            if row[name] is not None:
                row[name] = float(row[name])

    def _check_not_null(self, row: Mapping[str, Any]) -> None:
        missing = sorted(name for name in self.spec.not_null if row[name] is None)
        if missing:
            raise _violation(self.spec.name, f"NOT NULL constraint failed: {missing}", row)

    def _conflict(self, row: Mapping[str, Any], own_key: Any) -> bool:
        """Whether another row holds this row's primary key or one of its unique keys.
        A unique key with a NULL in it never conflicts (as in SQL)."""
        spec = self.spec
        if row[spec.key] != own_key and row[spec.key] in self.rows:
            return True
        for columns in spec.unique:
            wanted = tuple(row[name] for name in columns)
            if any(value is None for value in wanted):
                continue
            for key, other in self.rows.items():
                if key != own_key and tuple(other[name] for name in columns) == wanted:
                    return True
        return False


# -- the database ----------------------------------------------------------------------
@dataclass
class MemoryDatabase:
    """The tables behind the memory repositories, and their transactions."""

    actions: _Table[Action] = field(default_factory=lambda: _Table(ACTIONS))
    api_keys: _Table[MemoryApiKeyRow] = field(default_factory=lambda: _Table(API_KEYS))
    audit_log: _Table[MemoryAuditRow] = field(default_factory=lambda: _Table(AUDIT_LOG))
    limit_usage: _Table[MemoryUsageRow] = field(default_factory=lambda: _Table(LIMIT_USAGE))
    webhooks: _Table[MemoryWebhookRow] = field(default_factory=lambda: _Table(WEBHOOKS))
    webhook_deliveries: _Table[MemoryDeliveryRow] = field(default_factory=lambda: _Table(WEBHOOK_DELIVERIES))
    audit_head: tuple[int, str] = (0, GENESIS_HASH)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    def _tables(self) -> tuple[_Table[Any], ...]:
        return (self.actions, self.api_keys, self.audit_log, self.limit_usage, self.webhooks, self.webhook_deliveries)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Repositories]:
        """The repositories for one transaction: the lock is held until the block ends, and
        everything the block changed is undone if it raises. Nested blocks act as savepoints."""
        with self._lock:
            saved = [table.snapshot() for table in self._tables()], self.audit_head
            try:
                yield Repositories.memory(self)
            except BaseException:
                for table, snapshot in zip(self._tables(), saved[0], strict=True):
                    table.restore(snapshot)
                self.audit_head = saved[1]
                raise

    def read(self, fn: Callable[[Repositories], T]) -> T:
        """Like `Store.read`, with the repositories instead of a connection."""
        with self.transaction() as repos:
            return fn(repos)

    def write(self, fn: Callable[[Repositories], T]) -> T:
        """Like `Store.write`: `fn` runs in a transaction, undone if it raises."""
        with self.transaction() as repos:
            return fn(repos)


# -- the repositories --------------------------------------------------------------------
def _min(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


class MemoryActionStore:
    """The actions table in memory: an `ActionStore`."""

    def __init__(self, db: MemoryDatabase) -> None:
        self.t = db.actions

    def _by_id(self, action_id: str) -> dict[str, Any] | None:
        return self.t.first(id=action_id)

    def get(self, action_id: str) -> Action | None:
        found = self._by_id(action_id)
        return self.t.row(found) if found is not None else None

    def current_status(self, action_id: str) -> str | None:
        found = self._by_id(action_id)
        return found["status"] if found is not None else None

    def get_for_update(self, action_id: str) -> Action | None:
        return self.get(action_id)

    def find_idempotent(self, submitted_by: str, key: str) -> Action | None:
        found = self.t.first(submitted_by=submitted_by, idempotency_key=key)
        return self.t.row(found) if found is not None else None

    def find_reattachable(self, agent_id: str, rhash: str, statuses: Collection[str]) -> Action | None:
        wanted = set(statuses)
        matches = [
            r
            for r in self.t.scan()
            if r["submitted_hash"] == rhash and r["agent_id"] == agent_id and r["status"] in wanted
        ]
        return self.t.row(max(matches, key=lambda r: r["seq"])) if matches else None

    def find_same_call_in(self, agent_id: str, rhash: str, status: str) -> SameCall | None:
        found = self.t.first(submitted_hash=rhash, status=status, agent_id=agent_id)
        return None if found is None else SameCall(found["id"], found["submitted_by"], found["idempotency_key"])

    def touch_presence(self, action_id: str, now: float) -> None:
        found = self._by_id(action_id)
        if found is not None:
            self.t.update(found, {"agent_seen_at": now})

    def insert(self, values: Mapping[str, Any]) -> None:
        self.t.insert(values)

    def insert_finding_unknown_twin(self, values: Mapping[str, Any]) -> str | None:
        twin = self.find_same_call_in(values["agent_id"], values["submitted_hash"], Status.OUTCOME_UNKNOWN.value)
        self.insert(values)
        return None if twin is None else twin.id

    def compare_and_set(
        self, action_id: str, *, statuses: Collection[str], version: int, values: Mapping[str, Any]
    ) -> bool:
        found = self._by_id(action_id)
        if found is None or found["status"] not in set(statuses) or found["version"] != version:
            return False
        self.t.update(found, values)
        return True

    def list_page(self, where: ActionFilter, *, limit: int, cursor: int | None = None, offset: int = 0) -> list[Action]:
        exact = (
            ("submitted_by", where.submitted_by),
            ("status", where.status),
            ("tool", where.tool),
            ("agent_id", where.agent_id),
            ("risk_level", where.risk),
        )
        wanted = {column: value for column, value in exact if value}
        tests: list[Callable[[dict[str, Any]], bool]] = [lambda r: all(r[c] == v for c, v in wanted.items())]
        if where.id_prefix:
            prefix = where.id_prefix
            tests.append(lambda r: str(r["id"]).startswith(prefix))
        if where.since is not None:
            since = where.since
            tests.append(lambda r: r["created_at"] >= since)
        if where.until is not None:
            until = where.until
            # As the SQL does: the walk starts at the seq of the newest row created before
            # `until` plus the slack, and rows with a higher seq are not looked at.
            near = [r for r in self.t.scan() if r["created_at"] < until + _TIME_SLACK]
            bound = max(near, key=lambda r: (r["created_at"], r["seq"]))["seq"] if near else 0
            tests.append(lambda r: r["created_at"] < until and r["seq"] <= bound)
        if cursor is not None:
            below = cursor
            tests.append(lambda r: r["seq"] < below)
        found = sorted((r for r in self.t.scan() if all(test(r) for test in tests)), key=lambda r: -r["seq"])
        return [self.t.row(r) for r in found[offset : offset + max(limit, 0)]]

    def _first_past(self, column: str, status: str, now: float, *, unpicked: bool = False) -> str | None:
        due = [
            r
            for r in self.t.scan()
            if r["status"] == status
            and r[column] is not None
            and r[column] <= now
            and not (unpicked and r["picked_up_at"] is not None)
        ]
        return str(min(due, key=lambda r: (r[column], r["seq"]))["id"]) if due else None

    def _earliest(self, column: str, status: str, *, unpicked: bool = False) -> float | None:
        return _min(
            r[column]
            for r in self.t.scan()
            if r["status"] == status and not (unpicked and r["picked_up_at"] is not None)
        )

    def next_due(self, status: str, now: float) -> str | None:
        return self._first_past("expires_at", status, now)

    def earliest_expiry(self, status: str) -> float | None:
        return self._earliest("expires_at", status)

    def next_lapsed(self, status: str, now: float) -> str | None:
        return self._first_past("lapses_at", status, now, unpicked=True)

    def earliest_lapse(self, status: str) -> float | None:
        return self._earliest("lapses_at", status, unpicked=True)

    def next_lease_due(self, status: str, now: float) -> str | None:
        return self._first_past("lease_expires_at", status, now)

    def earliest_lease(self, status: str) -> float | None:
        return self._earliest("lease_expires_at", status)


class MemoryKeyStore:
    """The api_keys table in memory: a `KeyStore`."""

    def __init__(self, db: MemoryDatabase) -> None:
        self.t = db.api_keys

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
        self.t.insert(
            {
                "id": key_id,
                "name": name,
                "role": role,
                "agent_id": agent_id,
                "groups": groups_json,
                "key_hash": key_hash,
                "prefix": prefix,
                "created_at": created_at,
                "revoked_at": None,
            }
        )

    def revoke(self, key_id: str, now: float) -> bool:
        found = self.t.rows.get(key_id)
        if found is None or found["revoked_at"] is not None:
            return False
        self.t.update(found, {"revoked_at": now})
        return True

    def get(self, key_id: str) -> ApiKeyRow | None:
        found = self.t.rows.get(key_id)
        return self.t.row(found) if found is not None else None

    def get_active(self, key_id: str) -> ApiKeyRow | None:
        row = self.get(key_id)
        return row if row is not None and row.revoked_at is None else None

    def is_active(self, key_id: str) -> bool:
        return self.get_active(key_id) is not None

    def by_hash(self, key_hash: str) -> ApiKeyRow | None:
        found = self.t.first(key_hash=key_hash)
        return self.t.row(found) if found is not None else None

    def list_all(self) -> list[ApiKeyRow]:
        return [self.t.row(r) for r in sorted(self.t.scan(), key=lambda r: r["created_at"])]

    def count_active(self, role: str | None = None) -> int:
        return sum(1 for r in self.t.scan() if r["revoked_at"] is None and (role is None or r["role"] == role))

    def active_among(self, key_ids: set[str]) -> set[str]:
        return {
            key_id
            for key_id in key_ids
            if (found := self.t.rows.get(key_id)) is not None and found["revoked_at"] is None
        }


class MemoryLimitStore:
    """The limit_usage table in memory: a `LimitStore`."""

    def __init__(self, db: MemoryDatabase) -> None:
        self.t = db.limit_usage

    def lock_buckets(self, bucket_keys: Iterable[str]) -> None:
        """Nothing to do: the transaction holds the whole database."""

    def usage(self, *, limit_id: str, buckets: Sequence[str], since: float) -> tuple[int, float]:
        wanted = set(buckets)
        used = [
            r["amount"]
            for r in self.t.scan()
            if r["limit_id"] == limit_id and r["bucket"] in wanted and r["at"] > since
        ]
        return len(used), float(sum(used))

    def record(self, *, limit_id: str, bucket: str, amount: float, action_id: str, at: float) -> None:
        self.t.insert({"limit_id": limit_id, "bucket": bucket, "amount": amount, "action_id": action_id, "at": at})

    def release(self, action_id: str) -> None:
        for found in [r for r in self.t.scan() if r["action_id"] == action_id]:
            self.t.delete(found)


class MemoryWebhookStore:
    """The webhooks and webhook_deliveries tables in memory: a `WebhookStore`."""

    def __init__(self, db: MemoryDatabase) -> None:
        self.hooks = db.webhooks
        self.deliveries = db.webhook_deliveries

    def list_webhooks(self) -> list[WebhookRow]:
        ordered = sorted(self.hooks.scan(), key=lambda r: (r["created_at"], r["id"]))
        return [self.hooks.row(r) for r in ordered]

    def get_webhook(self, webhook_id: str) -> WebhookRow | None:
        found = self.hooks.rows.get(webhook_id)
        return self.hooks.row(found) if found is not None else None

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
        self.hooks.insert(
            {
                "id": webhook_id,
                "url": url,
                "secret": secret,
                "events": events_json,
                "format": format,
                "description": description,
                "created_by": created_by,
                "created_at": created_at,
            }
        )

    def delete_webhook(self, webhook_id: str) -> None:
        found = self.hooks.rows.get(webhook_id)
        if found is not None:
            self.hooks.delete(found)
        for delivery in [r for r in self.deliveries.scan() if r["webhook_id"] == webhook_id and r["status"] == PENDING]:
            self.deliveries.update(delivery, {"status": FAILED, "last_error": "webhook removed"})

    def enqueue(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self.deliveries.insert(row, skip_conflict=True)

    def due(self, now: float, limit: int, exclude: Collection[str] = ()) -> list[DeliveryRow]:
        skipped = set(exclude)
        found = [
            r
            for r in self.deliveries.scan()
            if r["status"] == PENDING and r["next_attempt_at"] <= now and r["webhook_id"] not in skipped
        ]
        found.sort(key=lambda r: (r["next_attempt_at"], r["id"]))
        return [self.deliveries.row(r) for r in found[: max(limit, 0)]]

    def claim(self, candidates: Sequence[DeliveryRow], now: float, lease: float) -> list[DeliveryRow]:
        claimed = []
        for row in candidates:
            found = self.deliveries.rows.get(row.id)
            if (
                found is not None
                and found["status"] == PENDING
                and found["attempts"] == row.attempts
                and found["next_attempt_at"] <= now
            ):
                self.deliveries.update(found, {"next_attempt_at": now + lease})
                claimed.append(row)
        return claimed

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
        values: dict[str, Any] = {"attempts": attempts_before + 1, "last_status": http_status, "last_error": error}
        if ok:
            values |= {"status": DELIVERED, "delivered_at": now, "last_error": None}
        elif next_attempt_at is None:
            values |= {"status": FAILED}
        else:
            values |= {"next_attempt_at": next_attempt_at}
        found = self.deliveries.rows.get(delivery_id)
        if found is not None and found["status"] == PENDING and found["attempts"] == attempts_before:
            self.deliveries.update(found, values)

    def next_due(self) -> float | None:
        return _min(r["next_attempt_at"] for r in self.deliveries.scan() if r["status"] == PENDING)

    def list_deliveries(self, webhook_id: str | None = None, limit: int = 50) -> list[DeliveryRow]:
        found = [r for r in self.deliveries.scan() if webhook_id is None or r["webhook_id"] == webhook_id]
        found.sort(key=lambda r: -r["id"])
        return [self.deliveries.row(r) for r in found[: max(limit, 0)]]

    def latest_delivery(self, webhook_id: str) -> DeliveryRow | None:
        found = self.list_deliveries(webhook_id, limit=1)
        return found[0] if found else None

    def count_pending(self) -> int:
        return sum(1 for r in self.deliveries.scan() if r["status"] == PENDING)


class MemoryAuditLog:
    """The audit_log table and its chain head in memory: an `AuditLog`."""

    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db
        self.t = db.audit_log

    def lock_head(self) -> tuple[int, str]:
        return self.db.audit_head

    def write_record(self, row: dict[str, Any]) -> None:
        self.t.insert(row)
        self.db.audit_head = (int(row["seq"]), str(row["hash"]))

    def read_head(self) -> tuple[int, str]:
        return self.db.audit_head

    def record_ts(self, seq: int) -> float | None:
        found = self.t.rows.get(seq)
        return float(found["ts"]) if found is not None else None

    def record_at(self, seq: int) -> AuditRow | None:
        found = self.t.rows.get(seq)
        return self.t.row(found) if found is not None else None

    def _ordered(self) -> list[dict[str, Any]]:
        return sorted(self.t.scan(), key=lambda r: r["seq"])

    def action_records(self, action_id: str) -> Sequence[AuditRow]:
        return [self.t.row(r) for r in self._ordered() if r["action_id"] == action_id]

    def records_after(self, seq: int, limit: int) -> Sequence[AuditRow]:
        return [self.t.row(r) for r in self._ordered() if r["seq"] > seq][: max(limit, 0)]

    def seq_of_hash(self, digest: str) -> int | None:
        found = [r["seq"] for r in self.t.scan() if r["hash"] == digest]
        return int(min(found)) if found else None

    def stream_records(
        self, *, since_seq: int | None = None, since_ts: float | None = None, action_id: str | None = None
    ) -> Iterator[tuple[Any, ...]]:
        picked = [
            tuple(r[name] for name in AUDIT_LOG.fields)
            for r in self._ordered()
            if (since_seq is None or r["seq"] > since_seq)
            and (since_ts is None or r["ts"] >= since_ts)
            and (action_id is None or r["action_id"] == action_id)
        ]
        return iter(picked)

"""The actions table's SQL: load, insert, compare-and-set, list and the expiry picks.

`faramesh.service` decides what a transition means; this module only moves rows. Every
function takes the caller's connection, so it runs inside the caller's transaction
(`Store.read` / `Store.write`). Rows come back with the actions columns as attributes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import bindparam, func, literal_column, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import ColumnClause

from faramesh.model import Action, Status
from faramesh.storage.prepared import Prepared
from faramesh.storage.rows import ActionFilter, SameCall
from faramesh.storage.schema import actions

__all__ = [
    "ActionFilter",
    "ActionRow",
    "Connection",
    "SameCall",
    "SqlActionStore",
    "compare_and_set",
    "current_status",
    "earliest_expiry",
    "earliest_lapse",
    "earliest_lease",
    "find_idempotent",
    "find_reattachable",
    "find_same_call_in",
    "get",
    "get_for_update",
    "insert",
    "insert_finding_unknown_twin",
    "list_page",
    "next_due",
    "next_lapsed",
    "next_lease_due",
    "touch_presence",
]

ActionRow = Action  # kept as a name for the callers that still say ActionRow


def _action(row: Any) -> Action | None:
    return None if row is None else Action(**row._mapping)


# Hot-path statements built once: SQLAlchemy then reuses their compiled form, where
# building a statement per call (`.values(...)`, `.where(... == value)`) costs ~6x more.
_SELECT_ACTION = select(actions).where(actions.c.id == bindparam("action_id"))
_SELECT_FOR_UPDATE = _SELECT_ACTION.with_for_update()
_INSERT_ACTION = Prepared(actions.insert())  # every submit: straight to the driver
# The insert that also answers submit's retry check: is another call of this agent with
# the same submitted hash waiting for its outcome to be known? Written as SQL because
# SQLAlchemy does not correlate a subquery in RETURNING with the inserted row; the text
# is the same on SQLite and PostgreSQL. One round trip fewer on every PostgreSQL submit.
_UNKNOWN_TWIN: ColumnClause[str] = literal_column(
    "(SELECT earlier.id FROM actions AS earlier"
    " WHERE earlier.agent_id = actions.agent_id AND earlier.submitted_hash = actions.submitted_hash"
    f" AND earlier.status = '{Status.OUTCOME_UNKNOWN.value}' AND earlier.id <> actions.id LIMIT 1)"
)
_INSERT_FINDING_TWIN = Prepared(actions.insert().returning(_UNKNOWN_TWIN))
_BY_IDEMPOTENCY_KEY = select(actions).where(
    actions.c.submitted_by == bindparam("submitted_by"), actions.c.idempotency_key == bindparam("key")
)
# Seconds of slack when a time filter is turned into a starting sequence number.
_TIME_SLACK = 60.0


def get(conn: Connection, action_id: str) -> ActionRow | None:
    return _action(conn.execute(_SELECT_ACTION, {"action_id": action_id}).first())


def current_status(conn: Connection, action_id: str) -> str | None:
    return conn.execute(select(actions.c.status).where(actions.c.id == action_id)).scalar()


def get_for_update(conn: Connection, action_id: str) -> ActionRow | None:
    """The row, locked until the transaction ends (PostgreSQL; SQLite has one writer),
    so concurrent decisions on one action see each other's votes."""
    return _action(conn.execute(_SELECT_FOR_UPDATE, {"action_id": action_id}).first())


def find_idempotent(conn: Connection, submitted_by: str, key: str) -> ActionRow | None:
    """The action this key already submitted under this Idempotency-Key, if any."""
    return _action(conn.execute(_BY_IDEMPOTENCY_KEY, {"submitted_by": submitted_by, "key": key}).first())


_REATTACHABLE = (
    select(actions)
    .where(
        actions.c.submitted_hash == bindparam("rhash"),
        actions.c.agent_id == bindparam("agent_id"),
        actions.c.status.in_(bindparam("statuses", expanding=True)),
    )
    .order_by(actions.c.seq.desc())
    .limit(1)
)


def find_reattachable(conn: Connection, agent_id: str, rhash: str, statuses: Collection[str]) -> ActionRow | None:
    """The newest action of this agent submitted with this request hash and now in one of
    `statuses` (the caller names those a retry may pick up), if any."""
    return _action(
        conn.execute(_REATTACHABLE, {"rhash": rhash, "agent_id": agent_id, "statuses": list(statuses)}).first()
    )


_SAME_CALL_IN = Prepared(  # every submit runs it: straight to the driver
    select(actions.c.id, actions.c.submitted_by, actions.c.idempotency_key)
    .where(
        actions.c.submitted_hash == bindparam("rhash"),
        actions.c.status == bindparam("status"),
        actions.c.agent_id == bindparam("agent_id"),
    )
    .limit(1)
)


def find_same_call_in(conn: Connection, agent_id: str, rhash: str, status: str) -> SameCall | None:
    """(id, submitted_by, idempotency_key) of an action of this agent submitted with this
    request hash and now in `status`, if any. One prebuilt statement on the re-attach
    index: submit runs it for every call."""
    row = _SAME_CALL_IN.first(conn, {"rhash": rhash, "status": status, "agent_id": agent_id})
    return None if row is None else SameCall(*row)


def touch_presence(conn: Connection, action_id: str, now: float) -> None:
    """Note that the submitting agent is waiting on the action now. Not a state change:
    no version bump, so it never races a decision's compare-and-set."""
    conn.execute(update(actions).where(actions.c.id == action_id).values(agent_seen_at=now))


def insert(conn: Connection, values: Mapping[str, Any]) -> None:
    """Insert a new action (raises IntegrityError on a duplicate Idempotency-Key)."""
    _INSERT_ACTION.execute(conn, values, columns=True)


def insert_finding_unknown_twin(conn: Connection, values: Mapping[str, Any]) -> str | None:
    """`insert`, returning the id of another action of the same agent with the same
    submitted hash whose outcome is unknown, if there is one (the caller then refuses
    the submit and rolls the insert back with its transaction)."""
    row = _INSERT_FINDING_TWIN.execute(conn, values, columns=True).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def compare_and_set(
    conn: Connection, action_id: str, *, statuses: Collection[str], version: int, values: Mapping[str, Any]
) -> bool:
    """Update the row only if it is still in one of `statuses` at `version`; True if it was."""
    result = conn.execute(
        update(actions)
        .where(actions.c.id == action_id, actions.c.status.in_(list(statuses)), actions.c.version == version)
        .values(**values)
    )
    return bool(result.rowcount == 1)


def list_page(
    conn: Connection, where: ActionFilter, *, limit: int, cursor: int | None = None, offset: int = 0
) -> list[ActionRow]:
    """Up to `limit` matching actions, newest first (by seq), below `cursor` when given."""
    query = select(actions).order_by(actions.c.seq.desc()).limit(limit)
    exact = (
        (actions.c.submitted_by, where.submitted_by),
        (actions.c.status, where.status),
        (actions.c.tool, where.tool),
        (actions.c.agent_id, where.agent_id),
        (actions.c.risk_level, where.risk),
    )
    for column, value in exact:
        if value:
            query = query.where(column == value)
    if where.id_prefix:
        query = query.where(actions.c.id.startswith(where.id_prefix, autoescape=True))
        if conn.dialect.name == "sqlite":
            # SQLite cannot use an index for LIKE; a byte-ordered range on the id index can.
            query = query.where(actions.c.id >= where.id_prefix, actions.c.id < where.id_prefix + "\U0010ffff")
    if where.since is not None:
        query = query.where(actions.c.created_at >= where.since)
    if where.until is not None:
        query = query.where(actions.c.created_at < where.until)
        # Start the newest-first walk near `until` rather than at the newest row. Times are
        # nearly in seq order; the slack keeps rows committed slightly out of order.
        bound = (
            select(actions.c.seq)
            .where(actions.c.created_at < where.until + _TIME_SLACK)
            .order_by(actions.c.created_at.desc())
            .limit(1)
            .scalar_subquery()
        )
        query = query.where(actions.c.seq <= func.coalesce(bound, 0))
    if cursor is not None:
        query = query.where(actions.c.seq < cursor)
    if offset:
        query = query.offset(offset)
    return [Action(**row._mapping) for row in conn.execute(query)]


def next_due(conn: Connection, status: str, now: float) -> str | None:
    """The id of the `status` action whose expiry passed first, locked for this transaction.

    On PostgreSQL a row another transaction holds is skipped (SKIP LOCKED), so replicas
    sweeping one database split the work; SQLite has a single writer and no row locks.
    """
    return conn.execute(
        select(actions.c.id)
        .where(actions.c.status == status, actions.c.expires_at.is_not(None), actions.c.expires_at <= now)
        .order_by(actions.c.expires_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).scalar()


def earliest_expiry(conn: Connection, status: str) -> float | None:
    # `IS NOT NULL`, which changes no answer, lets the planner use the partial index.
    value = conn.execute(
        select(func.min(actions.c.expires_at)).where(actions.c.status == status, actions.c.expires_at.is_not(None))
    ).scalar()
    return float(value) if value is not None else None


def next_lapsed(conn: Connection, status: str, now: float) -> str | None:
    """Like `next_due`, for approvals whose pick-up deadline (`lapses_at`) passed unused."""
    return conn.execute(
        select(actions.c.id)
        .where(
            actions.c.status == status,
            actions.c.lapses_at.is_not(None),
            actions.c.lapses_at <= now,
            actions.c.picked_up_at.is_(None),
        )
        .order_by(actions.c.lapses_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).scalar()


def earliest_lapse(conn: Connection, status: str) -> float | None:
    value = conn.execute(
        select(func.min(actions.c.lapses_at)).where(
            actions.c.status == status, actions.c.lapses_at.is_not(None), actions.c.picked_up_at.is_(None)
        )
    ).scalar()
    return float(value) if value is not None else None


def next_lease_due(conn: Connection, status: str, now: float) -> str | None:
    """Like `next_due`, for started actions whose execution lease (`lease_expires_at`) ran out."""
    return conn.execute(
        select(actions.c.id)
        .where(
            actions.c.status == status,
            actions.c.lease_expires_at.is_not(None),
            actions.c.lease_expires_at <= now,
        )
        .order_by(actions.c.lease_expires_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).scalar()


def earliest_lease(conn: Connection, status: str) -> float | None:
    value = conn.execute(
        select(func.min(actions.c.lease_expires_at)).where(
            actions.c.status == status, actions.c.lease_expires_at.is_not(None)
        )
    ).scalar()
    return float(value) if value is not None else None


class SqlActionStore:
    """The statements above bound to one connection: an `ActionStore` (faramesh.storage.repositories)."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, action_id: str) -> ActionRow | None:
        return get(self.conn, action_id)

    def current_status(self, action_id: str) -> str | None:
        return current_status(self.conn, action_id)

    def get_for_update(self, action_id: str) -> ActionRow | None:
        return get_for_update(self.conn, action_id)

    def find_idempotent(self, submitted_by: str, key: str) -> ActionRow | None:
        return find_idempotent(self.conn, submitted_by, key)

    def find_reattachable(self, agent_id: str, rhash: str, statuses: Collection[str]) -> ActionRow | None:
        return find_reattachable(self.conn, agent_id, rhash, statuses)

    def find_same_call_in(self, agent_id: str, rhash: str, status: str) -> SameCall | None:
        return find_same_call_in(self.conn, agent_id, rhash, status)

    def touch_presence(self, action_id: str, now: float) -> None:
        touch_presence(self.conn, action_id, now)

    def insert(self, values: Mapping[str, Any]) -> None:
        insert(self.conn, values)

    def insert_finding_unknown_twin(self, values: Mapping[str, Any]) -> str | None:
        return insert_finding_unknown_twin(self.conn, values)

    def compare_and_set(
        self, action_id: str, *, statuses: Collection[str], version: int, values: Mapping[str, Any]
    ) -> bool:
        return compare_and_set(self.conn, action_id, statuses=statuses, version=version, values=values)

    def list_page(
        self, where: ActionFilter, *, limit: int, cursor: int | None = None, offset: int = 0
    ) -> list[ActionRow]:
        return list_page(self.conn, where, limit=limit, cursor=cursor, offset=offset)

    def next_due(self, status: str, now: float) -> str | None:
        return next_due(self.conn, status, now)

    def earliest_expiry(self, status: str) -> float | None:
        return earliest_expiry(self.conn, status)

    def next_lapsed(self, status: str, now: float) -> str | None:
        return next_lapsed(self.conn, status, now)

    def earliest_lapse(self, status: str) -> float | None:
        return earliest_lapse(self.conn, status)

    def next_lease_due(self, status: str, now: float) -> str | None:
        return next_lease_due(self.conn, status, now)

    def earliest_lease(self, status: str) -> float | None:
        return earliest_lease(self.conn, status)

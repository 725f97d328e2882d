"""The audit log's SQL: the records table, the chain head, and the reads that verify them.

`faramesh.audit` decides what a record is, how it is hashed and what counts as a
problem; this module only moves rows. Appends run inside the caller's transaction
(the head row is locked FOR UPDATE on PostgreSQL; SQLite has a single writer), so
concurrent appends form one line. The full-log reads stream plain tuples from the
driver, because verification and export touch every row.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from faramesh.storage import group
from faramesh.storage.group import Group
from faramesh.storage.prepared import Prepared
from faramesh.storage.rows import AuditRow
from faramesh.storage.schema import GENESIS_HASH, actions, api_keys, approvals, audit_head, audit_log

__all__ = [
    "GENESIS_HASH",
    "VOTES",
    "Connection",
    "KeyRow",
    "SqlAuditLog",
    "action_records",
    "key_rows",
    "lock_head",
    "orphaned_records",
    "read_head",
    "record_at",
    "record_ts",
    "records_after",
    "seq_of_hash",
    "snapshot",
    "stream_action_records",
    "stream_action_states",
    "stream_records",
    "write_record",
]

# -- append ------------------------------------------------------------------------

# Built once: every state change runs these, and prebuilt statements skip SQLAlchemy's
# per-call statement construction and cache-key work.
# They run on the driver's cursor directly (see prepared.py).
_LOCK_HEAD = Prepared(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update())
_INSERT_RECORD = Prepared(audit_log.insert())
_MOVE_HEAD = Prepared(
    update(audit_head).where(audit_head.c.id == 1).values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


def lock_head(conn: Connection) -> tuple[int, str]:
    """The chain head's seq and hash, locked until the caller's transaction ends."""
    held = group.current(conn)  # a group commit holds the head: see storage/group.py
    if held is not None and held.head_seq is not None:
        return held.head_seq, held.head_hash
    row = _LOCK_HEAD.first(conn)
    if row is None:
        raise RuntimeError("the audit log has no head row: the database was not migrated")
    if held is not None:
        held.head_seq, held.head_hash = int(row[0]), str(row[1])
    return int(row[0]), str(row[1])


def write_record(conn: Connection, row: dict[str, Any]) -> None:
    """Insert a sealed record (the audit_log columns) and make it the chain head."""
    _INSERT_RECORD.execute(conn, row, columns=True)
    held = group.current(conn)
    if held is not None and held.head_seq is not None:
        held.head_seq, held.head_hash, held.head_moved = int(row["seq"]), str(row["hash"]), True
        return
    _MOVE_HEAD.execute(conn, {"new_seq": row["seq"], "new_hash": row["hash"]})


def write_held_head(conn: Connection, held: Group) -> None:
    """After a group's writes: move the head row to where they left the head, once."""
    if held.head_moved:
        _MOVE_HEAD.execute(conn, {"new_seq": held.head_seq, "new_hash": held.head_hash})


# -- reads -------------------------------------------------------------------------


def read_head(conn: Connection) -> tuple[int, str]:
    held = group.current(conn)
    if held is not None and held.head_seq is not None:  # a group holds it: the row may be behind
        return held.head_seq, held.head_hash
    row = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one()
    return int(row.seq), str(row.hash)


def record_ts(conn: Connection, seq: int) -> float | None:
    ts = conn.execute(select(audit_log.c.ts).where(audit_log.c.seq == seq)).scalar()
    return float(ts) if ts is not None else None


def record_at(conn: Connection, seq: int) -> AuditRow | None:
    """The row (with the audit_log columns as attributes) of the record with this seq, if any."""
    return conn.execute(select(audit_log).where(audit_log.c.seq == seq)).first()


def action_records(conn: Connection, action_id: str) -> Sequence[AuditRow]:
    """The rows (with the audit_log columns as attributes) of one action's records, in order."""
    return conn.execute(select(audit_log).where(audit_log.c.action_id == action_id).order_by(audit_log.c.seq)).all()


def records_after(conn: Connection, seq: int, limit: int) -> Sequence[AuditRow]:
    return conn.execute(select(audit_log).where(audit_log.c.seq > seq).order_by(audit_log.c.seq).limit(limit)).all()


def seq_of_hash(conn: Connection, digest: str) -> int | None:
    """The seq of a record stored with this hash, if any."""
    found = conn.execute(select(audit_log.c.seq).where(audit_log.c.hash == digest).limit(1)).scalar()
    return int(found) if found is not None else None


# -- whole-log reads (verify and export) --------------------------------------------


def snapshot(conn: Connection) -> Connection:
    """The connection set to read one snapshot across several statements.

    On a connection that has not started a transaction: REPEATABLE READ on PostgreSQL;
    SQLite's read transaction is already one snapshot.
    """
    if conn.dialect.name == "postgresql":
        return conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


# The columns of a chain row, in this order: (seq, ts, event, action_id, actor, data, prev_hash, hash).
_COLUMNS = (
    audit_log.c.seq,
    audit_log.c.ts,
    audit_log.c.event,
    audit_log.c.action_id,
    audit_log.c.actor,
    audit_log.c.data,
    audit_log.c.prev_hash,
    audit_log.c.hash,
)
_BATCH = 5000
_cursor_ids = itertools.count()


def _stream(conn: Connection, stmt: Any) -> Iterator[tuple[Any, ...]]:
    """Rows as plain tuples, in batches, straight from the driver.

    Verification reads every row of the log, so it skips SQLAlchemy's result rows and
    type processing (the columns are text, integers and floats, which the drivers
    return as such). PostgreSQL gets a server-side (named) cursor, so memory stays
    flat however long the log is; it runs inside the connection's transaction.
    """
    compiled = stmt.compile(dialect=conn.dialect)
    params = compiled.params
    args: Any = [params[name] for name in compiled.positiontup or ()] if compiled.positional else params
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    if conn.dialect.name == "postgresql":
        if not conn.in_transaction():
            conn.begin()
        cursor = dbapi.cursor(name=f"faramesh_audit_{next(_cursor_ids)}")
    else:
        cursor = dbapi.cursor()
    try:
        cursor.execute(str(compiled), args)
        while batch := cursor.fetchmany(_BATCH):
            yield from batch
    finally:
        cursor.close()


def stream_records(
    conn: Connection,
    *,
    since_seq: int | None = None,
    since_ts: float | None = None,
    action_id: str | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Records as (seq, ts, event, action_id, actor, data, prev_hash, hash), in seq order:
    after `since_seq`, at or after `since_ts`, of one action."""
    stmt = select(*_COLUMNS).order_by(audit_log.c.seq)
    if since_seq is not None:
        stmt = stmt.where(audit_log.c.seq > since_seq)
    if since_ts is not None:
        stmt = stmt.where(audit_log.c.ts >= since_ts)
    if action_id is not None:
        stmt = stmt.where(audit_log.c.action_id == action_id)
    return _stream(conn, stmt)


VOTES = "votes"  # in stream_action_states: how many approval rows the action has


def stream_action_states(conn: Connection, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """Every action as a tuple of `columns` (actions table columns, or VOTES), in the order
    of the actions table's integer seq (the same on every database)."""
    votes = (
        select(func.count())
        .select_from(approvals)
        .where(approvals.c.action_id == actions.c.id)
        .correlate(actions)
        .scalar_subquery()
    )
    selected = [votes if name == VOTES else actions.c[name] for name in columns]
    return _stream(conn, select(*selected).order_by(actions.c.seq))


def stream_action_records(conn: Connection) -> Iterator[tuple[Any, ...]]:
    """(action seq, record seq, event, data) of every record about an existing action, in the
    order of stream_action_states, then of the records."""
    stmt = (
        select(actions.c.seq, audit_log.c.seq, audit_log.c.event, audit_log.c.data)
        .select_from(actions.join(audit_log, audit_log.c.action_id == actions.c.id))
        .order_by(actions.c.seq, audit_log.c.seq)
    )
    return _stream(conn, stmt)


def orphaned_records(conn: Connection, limit: int) -> list[tuple[int, str]]:
    """(seq, action_id) of records naming an action whose row does not exist, in seq order."""
    known = select(actions.c.id).where(actions.c.id == audit_log.c.action_id).correlate(audit_log).exists()
    stmt = (
        select(audit_log.c.seq, audit_log.c.action_id)
        .where(audit_log.c.action_id.is_not(None), ~known)
        .order_by(audit_log.c.seq)
        .limit(limit)
    )
    return [(int(seq), str(aid)) for seq, aid in conn.execute(stmt)]


class KeyRow(NamedTuple):
    id: str
    name: str | None
    role: str
    agent_id: str | None
    groups: str | None  # JSON list
    key_hash: str
    revoked_at: float | None


def key_rows(conn: Connection) -> list[KeyRow]:
    """Every API key, oldest first."""
    stmt = select(*(api_keys.c[name] for name in KeyRow._fields)).order_by(api_keys.c.created_at)
    return [KeyRow(*row) for row in conn.execute(stmt)]


class SqlAuditLog:
    """The append, head and record reads above bound to one connection: an `AuditLog`
    (faramesh.storage.repositories). The whole-log verification reads stay functions."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def lock_head(self) -> tuple[int, str]:
        return lock_head(self.conn)

    def write_record(self, row: dict[str, Any]) -> None:
        write_record(self.conn, row)

    def read_head(self) -> tuple[int, str]:
        return read_head(self.conn)

    def record_ts(self, seq: int) -> float | None:
        return record_ts(self.conn, seq)

    def record_at(self, seq: int) -> AuditRow | None:
        return record_at(self.conn, seq)

    def action_records(self, action_id: str) -> Sequence[AuditRow]:
        return action_records(self.conn, action_id)

    def records_after(self, seq: int, limit: int) -> Sequence[AuditRow]:
        return records_after(self.conn, seq, limit)

    def seq_of_hash(self, digest: str) -> int | None:
        return seq_of_hash(self.conn, digest)

    def stream_records(
        self, *, since_seq: int | None = None, since_ts: float | None = None, action_id: str | None = None
    ) -> Iterator[tuple[Any, ...]]:
        return stream_records(self.conn, since_seq=since_seq, since_ts=since_ts, action_id=action_id)

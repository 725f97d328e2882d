"""The recorded actions, read back for `faramesh policy replay`.

Each action comes with what the server saw when it decided: its tool, operation,
params and context, the agent id, and the role and groups of the key that submitted
it. The records are plain values, so the replay itself (faramesh.policy.tooling)
needs no database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection

from faramesh.config import shown_database_url
from faramesh.storage.existing import DatabaseUnusable, check_exists
from faramesh.storage.schema import actions, api_keys
from faramesh.storage.store import Store

__all__ = ["BATCH", "HistoryError", "RecordedAction", "recorded_actions"]

BATCH = 1000


class HistoryError(ValueError):
    """The database could not be read as a Faramesh database; the message says why."""


@dataclass(frozen=True)
class RecordedAction:
    seq: int
    id: str
    tool: str
    operation: str
    params: Any  # as stored (a JSON object), or None when it could not be read
    context: Any
    agent_id: str | None
    decision: str
    reason: str | None
    rule_id: str | None
    created_at: float
    role: str | None  # of the submitting key; None when that key no longer exists
    groups: tuple[str, ...]


_COLUMNS = (
    actions.c.seq,
    actions.c.id,
    actions.c.tool,
    actions.c.operation,
    actions.c.params,
    actions.c.context,
    actions.c.agent_id,
    actions.c.decision,
    actions.c.reason,
    actions.c.rule_id,
    actions.c.created_at,
    api_keys.c.role,
    api_keys.c.groups,
)


@contextlib.contextmanager
def recorded_actions(
    database_url: str, *, since_seq: int | None = None, since_at: float | None = None
) -> Iterator[Iterator[RecordedAction]]:
    """The stored actions, oldest first, read in batches: those with a sequence number of
    at least `since_seq` and created at or after `since_at` (Unix time).

    Refuses (HistoryError) an invalid URL, a SQLite file that does not exist (it is not
    created) and a database without an actions table.
    """
    try:
        check_exists(database_url)
    except DatabaseUnusable as exc:
        raise HistoryError(str(exc)) from None
    store = Store(database_url)
    try:
        if not store.read(lambda conn: inspect(conn).has_table("actions")):
            raise HistoryError(f"{shown_database_url(database_url)} has no actions table; is it a Faramesh database?")
        yield _read(store, since_seq, since_at)
    finally:
        store.close()


def _read(store: Store, since_seq: int | None, since_at: float | None) -> Iterator[RecordedAction]:
    query = (
        select(*_COLUMNS)
        .select_from(actions.outerjoin(api_keys, api_keys.c.id == actions.c.submitted_by))
        .order_by(actions.c.seq)
        .limit(BATCH)
    )
    if since_seq is not None:
        query = query.where(actions.c.seq >= since_seq)
    if since_at is not None:
        query = query.where(actions.c.created_at >= since_at)
    last: int | None = None
    while True:
        page = query if last is None else query.where(actions.c.seq > last)
        rows = store.read(partial(_page, page))
        yield from (_record(row) for row in rows)
        if len(rows) < BATCH:
            return
        last = rows[-1].seq


def _page(query: Any, conn: Connection) -> Sequence[Any]:
    return conn.execute(query).all()


def _record(row: Any) -> RecordedAction:
    try:
        params = orjson.loads(row.params)
        context = orjson.loads(row.context)
        groups = orjson.loads(row.groups) if row.groups else []
    except orjson.JSONDecodeError:
        params, context, groups = None, None, []
    return RecordedAction(
        seq=int(row.seq),
        id=row.id,
        tool=row.tool,
        operation=row.operation,
        params=params,
        context=context,
        agent_id=row.agent_id,
        decision=row.decision,
        reason=row.reason,
        rule_id=row.rule_id,
        created_at=float(row.created_at),
        role=row.role,
        groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (),
    )

"""What a group commit holds in memory for the writes it runs in one transaction.

`Store` runs writes that wait together as one transaction, each in its own SAVEPOINT
(`store._run_jobs`). Two things every such write would otherwise do statement by
statement are held here for the whole group instead:

- the audit chain's head: read (and on PostgreSQL locked) at the group's first append,
  kept current in memory, and its row written once at the end (`audit_log`): two
  statements fewer per record;
- the change notices for other server processes (PostgreSQL): queued here and sent in
  one statement at the end (`notify`), one round trip fewer per write. PostgreSQL
  delivers them only when the transaction commits, as it would have anyway.

A write that fails is rolled back to its savepoint, and what it added here goes with
it (`save`/`restore`); so do the savepoints a write opens itself (`follow_savepoints`).
Only `holding` turns this on, for one transaction, and it always turns it off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

__all__ = ["Group", "current", "follow_savepoints", "holding"]

_KEY = "faramesh.group"

Saved = tuple[int | None, str, bool, int]


class Group:
    """The state a group holds. `head_seq` is None until the first append reads the head."""

    __slots__ = ("head_hash", "head_moved", "head_seq", "marks", "notices")

    def __init__(self, head: tuple[int, str] | None = None) -> None:
        self.head_seq: int | None = head[0] if head is not None else None
        self.head_hash = head[1] if head is not None else ""
        self.head_moved = False  # records were appended: the head row must be written
        self.notices: list[str] = []  # payloads to send at the end, in order
        # What was held at each open SQLAlchemy savepoint (`begin_nested`), innermost last.
        self.marks: list[Saved] = []

    def save(self) -> Saved:
        return self.head_seq, self.head_hash, self.head_moved, len(self.notices)

    def restore(self, saved: Saved) -> None:
        """Back to `saved`, after what followed it was rolled back."""
        self.head_seq, self.head_hash, self.head_moved, sent = saved
        del self.notices[sent:]


def current(conn: Connection) -> Group | None:
    """The group holding state for `conn`'s transaction, if any."""
    group: Group | None = conn.info.get(_KEY)
    return group


@contextlib.contextmanager
def holding(conn: Connection, head: tuple[int, str] | None = None) -> Iterator[Group]:
    """Hold the group's state while its writes run in `conn`'s open transaction
    (`head`: the audit head the caller read and locked already). The caller writes
    out what is held (`audit_log.write_held_head`, `notify.send_held`) after a normal
    exit, and nothing after an exception (it rolls the transaction back)."""
    info = conn.info  # kept: after a lost connection, `conn.info` itself may raise
    if _KEY in info:
        raise RuntimeError("a group already holds this connection")
    group = Group(head)
    info[_KEY] = group
    try:
        yield group
    finally:
        info.pop(_KEY, None)


def follow_savepoints(engine: Engine) -> None:
    """Keep a group's state right across the savepoints a write opens itself
    (`conn.begin_nested()`): rolling one back undoes what was held after it, as the
    database undoes the rows. SQLAlchemy names its savepoints only after announcing
    them, and they end in reverse order of opening, so the marks are a stack."""

    @event.listens_for(engine, "savepoint")
    def _opened(conn: Connection, _name: str | None) -> None:
        group = current(conn)
        if group is not None:
            group.marks.append(group.save())

    @event.listens_for(engine, "rollback_savepoint")
    def _rolled_back(conn: Connection, _name: str, _context: Any) -> None:
        group = current(conn)
        if group is not None and group.marks:
            group.restore(group.marks.pop())

    @event.listens_for(engine, "release_savepoint")
    def _released(conn: Connection, _name: str, _context: Any) -> None:
        group = current(conn)
        if group is not None and group.marks:
            group.marks.pop()

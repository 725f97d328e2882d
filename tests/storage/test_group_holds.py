"""What a group commit holds in memory (storage/group.py): the audit chain's head, whose
records still form one line, a write rolled back taking its records with it, every write
in the group seeing the head as the writes before it left it, and the head row read and
written once per group instead of once per record; and on PostgreSQL the change notices,
sent once at the group's end without those of the writes rolled back. On SQLite (the
loop's and the writer thread's groups) and on PostgreSQL (the writer thread's groups)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import psycopg
import pytest
from sqlalchemy.exc import DBAPIError

from faramesh import audit
from faramesh.audit.chain import events_after, head
from faramesh.storage import Store, notify
from faramesh.storage.actions_repo import Connection
from faramesh.storage.errors import connection_lost
from tests.storage.test_group_commit import Boom, run_as_one_group


def _append(name: str, *, fail: bool = False, seen: list[tuple[str, int, int]] | None = None) -> Any:
    """A write appending one record; with `seen`, it notes (name, its seq, the head it
    then reads); with `fail`, it raises after appending."""

    def write(conn: Connection) -> int:
        seq = audit.append(conn, event="test.appended", ts=time.time(), data={"name": name})
        if seen is not None:
            seen.append((name, seq, head(conn)[0]))
        if fail:
            raise Boom(name)
        return seq

    return write


def _chain(store: Store) -> tuple[list[tuple[int, str]], tuple[int, str], bool]:
    """(seq, name) of every record, the head row, and whether the log verifies."""

    def read(conn: Connection) -> tuple[list[tuple[int, str]], tuple[int, str]]:
        records = [(r.seq, r.data.get("name", "")) for r in events_after(conn, 0)]
        return records, head(conn)

    records, head_row = store.read(read)
    with store.connect() as conn:
        ok = audit.verify_database(conn).ok
    return records, head_row, ok


def test_a_groups_records_form_one_line_and_a_failed_write_takes_its_own(store: Store) -> None:
    seen: list[tuple[str, int, int]] = []
    names = ["a", "b", "bad", "c", "d"]
    answers = run_as_one_group(store, [_append(n, fail=n == "bad", seen=seen) for n in names])
    assert [a if isinstance(a, int) else "boom" for a in answers] == [1, 2, "boom", 3, 4]
    # Each write saw the head it left; the failed write's seq was given to the next one.
    expected = [("a", 1, 1), ("b", 2, 2), ("bad", 3, 3), ("c", 3, 3), ("d", 4, 4)]
    assert seen[-5:] == expected
    # On PostgreSQL these writes (they may run again) went as a whole first, up to the
    # failure, and were rolled back: those runs saw the same heads.
    assert seen[:-5] == ([] if store.embedded else expected[:3])
    records, head_row, ok = _chain(store)
    assert records == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
    last_hash = store.read(lambda conn: events_after(conn, 3)[0].hash)
    assert head_row == (4, last_hash) and ok


def test_a_group_whose_every_write_fails_leaves_the_head_where_it_was(store: Store) -> None:
    store.write(_append("before"))
    before = store.read(head)
    answers = run_as_one_group(store, [_append(n, fail=True) for n in ("x", "y")])
    assert all(isinstance(a, Boom) for a in answers)
    records, head_row, ok = _chain(store)
    assert records == [(1, "before")] and head_row == before and ok


def test_groups_after_groups_continue_the_same_line(store: Store) -> None:
    for round_ in range(3):
        run_as_one_group(store, [_append(f"{round_}-{n}") for n in range(3)])
    store.write(_append("alone"))  # a write on its own moves the head row itself
    records, head_row, ok = _chain(store)
    assert [seq for seq, _ in records] == list(range(1, 11)) and head_row[0] == 10 and ok


@pytest.mark.backends("sqlite")
def test_the_head_row_is_read_and_written_once_per_group(store: Store) -> None:
    """The loop's group commit: five appends, one read and one write of the head row."""
    statements: list[str] = []

    def trace_on(conn: Connection) -> None:
        conn.connection.dbapi_connection.set_trace_callback(statements.append)  # type: ignore[union-attr]

    def trace_off(conn: Connection) -> None:
        conn.connection.dbapi_connection.set_trace_callback(None)  # type: ignore[union-attr]

    async def scenario() -> list[Any]:
        writes = [store.write_async(trace_on)] + [store.write_async(_append(f"n{n}")) for n in range(5)]
        answers = await asyncio.gather(*writes)  # one group
        await store.write_async(trace_off)  # the next one
        return answers

    answers = asyncio.run(scenario())
    assert answers[1:] == [1, 2, 3, 4, 5]
    on_head = [s.split()[0].upper() for s in statements if "audit_head" in s]
    assert on_head == ["SELECT", "UPDATE"], statements
    assert statements.index("COMMIT") > max(i for i, s in enumerate(statements) if "audit_head" in s)
    records, head_row, ok = _chain(store)
    assert [seq for seq, _ in records] == [1, 2, 3, 4, 5] and head_row[0] == 5 and ok


@pytest.mark.backends("postgresql")
def test_a_connection_lost_in_the_middle_of_a_group_fails_the_group_and_the_next_one_lands(store: Store) -> None:
    """The server ends the group's connection between two of its appends: every write of
    the group is told what failed (the lost connection, not a follow-up error about the
    held head), nothing of it is kept, and the next group continues the line."""

    def cut(conn: Connection) -> int:
        seq = audit.append(conn, event="test.appended", ts=time.time(), data={"name": "cut"})
        pid = conn.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
        with psycopg.connect(store.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return seq

    answers = run_as_one_group(store, [_append("a"), cut, _append("c")])
    assert all(isinstance(a, DBAPIError) and connection_lost(a) for a in answers), answers
    assert _chain(store)[0] == []
    assert run_as_one_group(store, [_append("d"), _append("e")]) == [1, 2]
    records, head_row, ok = _chain(store)
    assert records == [(1, "d"), (2, "e")] and head_row[0] == 2 and ok


def test_a_savepoint_a_write_rolls_back_itself_takes_its_records_off_the_held_head(store: Store) -> None:
    """A write may open savepoints of its own (`begin_nested`) and roll one back after
    appending inside it: the held head goes back with the records."""

    def tries_twice(conn: Connection) -> int:
        attempt = conn.begin_nested()
        audit.append(conn, event="test.appended", ts=time.time(), data={"name": "undone"})
        attempt.rollback()
        with conn.begin_nested():
            return audit.append(conn, event="test.appended", ts=time.time(), data={"name": "kept"})

    assert run_as_one_group(store, [_append("a"), tries_twice, _append("b")]) == [1, 2, 3]
    records, head_row, ok = _chain(store)
    assert records == [(1, "a"), (2, "kept"), (3, "b")] and head_row[0] == 3 and ok


@pytest.mark.backends("postgresql")
def test_a_groups_change_notices_are_sent_once_at_its_end_without_the_failed_writes(store: Store) -> None:
    """PostgreSQL: the change notices of a group's writes wait for the group's end and go
    out together; another process hears those of the writes that committed, in order,
    and nothing of a write that was rolled back."""
    dsn = store.url.replace("postgresql+psycopg://", "postgresql://")
    listener = psycopg.connect(dsn, autocommit=True)
    listener.execute(f"LISTEN {notify.CHANNEL}")

    def changes(name: str, *, fail: bool = False) -> Any:
        def write(conn: Connection) -> int:
            seq = audit.append(conn, event="test.appended", ts=time.time(), data={"name": name})
            store.notify(conn, type="test.changed", action_id=name, seq=seq)
            if fail:
                raise Boom(name)
            return seq

        return write

    try:
        answers = run_as_one_group(store, [changes("a"), changes("bad", fail=True), changes("b"), changes("c")])
        assert [a if isinstance(a, int) else "boom" for a in answers] == [1, "boom", 2, 3]
        heard = [orjson.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=3)]
    finally:
        listener.close()
    assert [(n["action_id"], n["seq"]) for n in heard] == [("a", 1), ("b", 2), ("c", 3)]

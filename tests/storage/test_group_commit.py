"""The SQLite writer's group commit: writes waiting together share one transaction and
one fsync, yet each succeeds or fails on its own.

The writer is held busy by a first job so that the next ones queue up and are run as one
batch; one of them fails after it has written. Its rows must be gone, the others' must be
committed, and every caller must get its own answer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from faramesh import audit
from faramesh.storage import DuplicateRow, Store, actions_repo
from faramesh.storage import store as store_module
from faramesh.storage.actions_repo import Connection
from faramesh.storage.errors import connection_lost


def _values(action_id: str, **extra: Any) -> dict[str, Any]:
    now = time.time()
    return {
        "id": action_id,
        "status": "allowed",
        "decision": "allow",
        "reason": "test",
        "risk_level": "low",
        "policy_hash": "p" * 64,
        "request_hash": "r" * 64,
        "submitted_hash": "r" * 64,
        "tool": "t",
        "operation": "o",
        "params": "{}",
        "context": "{}",
        "agent_id": "a",
        "submitted_by": "k",
        "created_at": now,
        "updated_at": now,
    } | extra


class Boom(Exception):
    pass


class HeldWrite:
    """A write that keeps the writer busy until `gate` is set: the writes queued
    meanwhile are run together as one batch."""

    def __init__(self) -> None:
        self.started, self.gate = threading.Event(), threading.Event()

    def __call__(self, conn: Connection) -> str:
        self.started.set()
        self.gate.wait(10)
        return "held"


def run_as_one_group(store: Store, writes: list[Callable[[Connection], Any]]) -> list[Any]:
    """Run `writes` through `write_grouped` as one group: they queue behind a write that
    holds the writer busy, then go together. Each one's answer, or what it raised."""
    hold = HeldWrite()
    with ThreadPoolExecutor(len(writes) + 1) as pool:
        first = pool.submit(store.write_grouped, hold)
        assert hold.started.wait(10)
        futures: list[Future[Any]] = [pool.submit(store.write_grouped, w) for w in writes]
        deadline = time.monotonic() + 10
        while store._queue.qsize() < len(writes):  # all queued behind the held job: one group
            assert time.monotonic() < deadline, "the writes never queued"
            time.sleep(0.005)
        hold.gate.set()
        assert first.result(10) == "held"
        return [f.exception(10) or f.result() for f in futures]


def _insert(action_id: str) -> Any:
    """A write that inserts an action with this id and answers the id."""
    return lambda conn: actions_repo.insert(conn, _values(action_id)) or action_id


def test_a_failing_write_in_a_batch_leaves_the_others_committed(store: Store) -> None:
    """Grouped writes: every write on SQLite; on PostgreSQL, submits that lock no existing
    row, which the writer thread groups the same way."""

    def good(action_id: str) -> Any:
        def write(conn: Connection) -> str:
            actions_repo.insert(conn, _values(action_id))
            return action_id

        return write

    def bad(action_id: str) -> Any:
        def write(conn: Connection) -> str:
            actions_repo.insert(conn, _values(action_id))  # written, then the job fails
            raise Boom(action_id)

        return write

    ids = [str(uuid.uuid4()) for _ in range(5)]
    answers = run_as_one_group(store, [bad(a) if n == 2 else good(a) for n, a in enumerate(ids)])
    assert [a if isinstance(a, str) else "boom" for a in answers] == [ids[0], ids[1], "boom", ids[3], ids[4]]
    stored = {a for a in ids if store.read(lambda conn, a=a: actions_repo.get(conn, a)) is not None}
    assert stored == {ids[0], ids[1], ids[3], ids[4]}


def test_a_duplicate_idempotency_key_is_refused_as_a_duplicate_row(store: Store) -> None:
    """The action insert runs on the driver's cursor; its constraint error still arrives
    as the storage layer's DuplicateRow, and the failed write leaves nothing behind."""
    store.write(lambda conn: actions_repo.insert(conn, _values("a1", idempotency_key="same")))
    with pytest.raises(DuplicateRow):
        store.write(lambda conn: actions_repo.insert(conn, _values("a2", idempotency_key="same")))
    assert store.read(lambda conn: actions_repo.get(conn, "a2")) is None
    # The writer (SQLite) or the pool (PostgreSQL) goes on working after the refusal.
    store.write(lambda conn: actions_repo.insert(conn, _values("a3", idempotency_key="other")))
    found = store.read(lambda conn: actions_repo.get(conn, "a3"))
    assert found is not None and found.idempotency_key == "other"
    # Columns left out take their schema defaults, as through SQLAlchemy's own insert.
    assert (found.version, found.approval_quorum) == (1, 1)


def test_an_awaited_write_is_durable_even_when_its_caller_is_cancelled(store: Store) -> None:
    """`write_async` (submit on the event loop; on PostgreSQL a grouped one, awaited in
    the writer thread's group): once queued, a write is written, as a worker thread's
    would be; a caller that goes away does not break the writer."""
    hold = HeldWrite()

    async def scenario() -> list[Any]:
        held = asyncio.get_running_loop().run_in_executor(None, store.write_grouped, hold)
        assert await asyncio.to_thread(hold.started.wait, 10)
        gone = asyncio.create_task(store.write_async(_insert("cancelled"), grouped=True))
        kept = asyncio.create_task(store.write_async(_insert("kept"), grouped=True))
        await asyncio.sleep(0.05)  # both queued behind the held job
        gone.cancel()
        hold.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return [await held, await kept, await store.write_async(_insert("after"), grouped=True)]

    assert asyncio.run(scenario()) == ["held", "kept", "after"]
    for action_id in ("cancelled", "kept", "after"):
        assert store.read(lambda conn, a=action_id: actions_repo.get(conn, a)) is not None, action_id


def test_a_failed_write_whose_caller_went_away_is_not_reported_as_unread(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller of an awaited write is cancelled, then the write fails: nobody is left to
    be told, and asyncio must not log "Future exception was never retrieved" for it."""
    hold = HeldWrite()

    def bad(conn: Connection) -> None:
        actions_repo.insert(conn, _values("bad"))
        raise Boom("bad")

    async def scenario() -> None:
        held = asyncio.get_running_loop().run_in_executor(None, store.write_grouped, hold)
        assert await asyncio.to_thread(hold.started.wait, 10)
        gone = asyncio.create_task(store.write_async(bad, grouped=True))
        await asyncio.sleep(0.05)  # queued behind the held job
        gone.cancel()
        hold.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        await held
        await store.write_async(_insert("after"), grouped=True)  # the failed one is answered by now

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(scenario())
        gc.collect()
    assert "never retrieved" not in caplog.text
    assert store.read(lambda conn: actions_repo.get(conn, "bad")) is None


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "alone"])
def test_a_failed_awaited_write_raises_to_its_caller_and_leaves_nothing(store: Store, grouped: bool) -> None:
    def bad(conn: Connection) -> None:
        actions_repo.insert(conn, _values("bad"))
        raise Boom("bad")

    async def scenario() -> None:
        with pytest.raises(Boom):
            await store.write_async(bad, grouped=grouped)

    asyncio.run(scenario())
    assert store.read(lambda conn: actions_repo.get(conn, "bad")) is None


@pytest.mark.backends("postgresql")
def test_an_awaited_write_that_may_not_be_grouped_runs_on_its_own(store: Store) -> None:
    """PostgreSQL: a write that locks existing rows (a held submit, limits) must not join
    the writer thread's group (see `write_grouped`): awaited, it runs in its own
    transaction in a worker thread, and commits while the writer thread is busy."""
    hold = HeldWrite()

    async def scenario() -> list[Any]:
        held = asyncio.get_running_loop().run_in_executor(None, store.write_grouped, hold)
        assert await asyncio.to_thread(hold.started.wait, 10)
        try:
            alone = await asyncio.wait_for(store.write_async(_insert("alone")), 10)
        finally:
            hold.gate.set()
        return [alone, await held]

    assert asyncio.run(scenario()) == ["alone", "held"]
    assert store.read(lambda conn: actions_repo.get(conn, "alone")) is not None


@pytest.mark.backends("sqlite")
def test_writes_awaited_together_commit_together_each_on_its_own(store: Store) -> None:
    """The event loop's group commit: a failing write among those awaited together
    leaves the others committed, and each caller gets its own answer."""

    def bad(conn: Connection) -> None:
        actions_repo.insert(conn, _values("bad"))
        raise Boom("bad")

    async def scenario() -> list[Any]:
        writes = [store.write_async(_insert(f"a{n}")) for n in range(3)] + [store.write_async(bad)]
        writes += [store.write_async(_insert(f"a{n}")) for n in range(3, 6)]
        return await asyncio.gather(*writes, return_exceptions=True)

    answers = asyncio.run(scenario())
    assert [a if isinstance(a, str) else type(a).__name__ for a in answers] == [
        "a0",
        "a1",
        "a2",
        "Boom",
        "a3",
        "a4",
        "a5",
    ]
    stored = {a for a in [f"a{n}" for n in range(6)] + ["bad"] if store.read(lambda c, a=a: actions_repo.get(c, a))}
    assert stored == {f"a{n}" for n in range(6)}


def _together(store: Store, writes: list[Callable[[Connection], Any]]) -> list[Any]:
    """Run submit-like writes (they may run again) as one group: awaited together on
    SQLite (the loop's group commit), through the writer thread on PostgreSQL."""
    if not store.embedded:
        return run_as_one_group(store, writes)

    async def scenario() -> list[Any]:
        return await asyncio.gather(*[store.write_async(w) for w in writes], return_exceptions=True)

    return asyncio.run(scenario())


def _recording(calls: Counter[int], n: int, *, fail: bool = False) -> Callable[[Connection], Any]:
    """A submit-like write: an action and its audit record; counts its runs."""

    def write(conn: Connection) -> int:
        calls[n] += 1
        actions_repo.insert(conn, _values(f"a{n}"))
        audit.append(conn, event="action.submitted", ts=time.time(), action_id=f"a{n}", actor="test", data={"n": n})
        if fail:
            raise Boom(n)
        return n

    return write


def test_a_group_that_meets_a_failure_runs_again_write_by_write(store: Store) -> None:
    """Writes that may run again (submits) go as a group under one SAVEPOINT; when one
    fails, all of it is rolled back and the group runs again with a SAVEPOINT per write,
    so the others still commit, the failing one leaves nothing, and the audit chain has
    no gap and no record of the rolled-back runs."""
    calls: Counter[int] = Counter()
    writes = [_recording(calls, 0), _recording(calls, 1), _recording(calls, 2, fail=True), _recording(calls, 3)]
    answers = _together(store, writes)
    assert answers[:2] == [0, 1] and isinstance(answers[2], Boom) and answers[3] == 3
    # The whole group first (it stopped at the failure), then each write on its own.
    assert calls == Counter({0: 2, 1: 2, 2: 2, 3: 1})
    stored = {a for a in ("a0", "a1", "a2", "a3") if store.read(lambda conn, a=a: actions_repo.get(conn, a))}
    assert stored == {"a0", "a1", "a3"}
    records = store.read(lambda conn: audit.events_after(conn, 0))
    assert [(r.seq, r.action_id) for r in records] == [(1, "a0"), (2, "a1"), (3, "a3")]
    assert _chain_problems(store) == []
    # The next group appends after it, each write run once.
    calls.clear()
    assert _together(store, [_recording(calls, n) for n in (4, 5, 6)]) == [4, 5, 6]
    assert calls == Counter({4: 1, 5: 1, 6: 1})
    assert [r.seq for r in store.read(lambda conn: audit.events_after(conn, 3))] == [4, 5, 6]
    assert _chain_problems(store) == []


def _chain_problems(store: Store) -> list[Any]:
    """What verification finds wrong with the chain and its head (these bare records do
    not carry what a real submit's record says about its action, so that part is left out)."""
    return [p for p in store.read(audit.verify_database).problems if p.kind != "state"]


@pytest.mark.backends("sqlite")
def test_writes_awaited_together_share_one_savepoint(store: Store) -> None:
    statements: list[str] = []
    calls: Counter[int] = Counter()

    async def scenario() -> list[Any]:
        traced = store._loop_connection().connection.dbapi_connection
        assert traced is not None
        traced.set_trace_callback(statements.append)
        try:
            return await asyncio.gather(*[store.write_async(_recording(calls, n)) for n in range(4)])
        finally:
            traced.set_trace_callback(None)

    assert asyncio.run(scenario()) == [0, 1, 2, 3]
    assert [s for s in statements if s.startswith("SAVEPOINT")] == ["SAVEPOINT faramesh_job"]


@pytest.mark.backends("sqlite")
def test_a_database_locked_by_another_process_never_stalls_the_event_loop(store: Store, tmp_path: Path) -> None:
    """Another process (the CLI on the same file) holds the write lock: the awaited write
    waits for it in a thread, the loop keeps serving, and the write lands once it can."""
    path = store.url.split("///", 1)[1]
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def scenario() -> str:
        ticking = asyncio.create_task(ticker())
        write = asyncio.create_task(store.write_async(lambda conn: actions_repo.insert(conn, _values("x")) or "x"))
        await asyncio.sleep(0.3)
        assert not write.done()  # still waiting for the other process
        assert ticks >= 10  # and the loop went on meanwhile
        other.execute("COMMIT")
        answer = await asyncio.wait_for(write, 10)
        ticking.cancel()
        return answer

    try:
        assert asyncio.run(scenario()) == "x"
    finally:
        other.close()
    assert store.read(lambda conn: actions_repo.get(conn, "x")) is not None
    # The loop's connection is back to never waiting: a later awaited write is immediate.
    assert asyncio.run(store.write_async(lambda conn: actions_repo.insert(conn, _values("y")) or "y")) == "y"


@pytest.mark.backends("sqlite")
def test_the_writer_thread_and_the_event_loop_write_side_by_side(store: Store) -> None:
    """Writes from worker threads (approvals, sweeps) and awaited writes (submits) share
    the database without refusing each other as locked."""

    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(4) as pool:
            threaded = [loop.run_in_executor(pool, store.write, _insert(f"t{n}")) for n in range(40)]
            awaited = [store.write_async(_insert(f"l{n}")) for n in range(40)]
            return await asyncio.gather(*threaded, *awaited)

    answers = asyncio.run(scenario())
    assert sorted(answers) == sorted([f"t{n}" for n in range(40)] + [f"l{n}" for n in range(40)])
    count = store.read(lambda conn: conn.exec_driver_sql("SELECT count(*) FROM actions").scalar())
    assert count == 80


@pytest.mark.backends("sqlite")
def test_closing_the_store_commits_the_writes_already_accepted(store: Store) -> None:
    async def scenario() -> None:
        writes = [
            asyncio.create_task(store.write_async(lambda conn, n=n: actions_repo.insert(conn, _values(f"c{n}"))))
            for n in range(20)
        ]
        await asyncio.sleep(0)  # accepted, not yet committed
        await asyncio.gather(asyncio.to_thread(store.close), *writes)

    asyncio.run(scenario())
    reopened = Store(store.url)
    try:
        count = reopened.read(lambda conn: conn.exec_driver_sql("SELECT count(*) FROM actions").scalar())
    finally:
        reopened.close()
    assert count == 20


@pytest.mark.backends("sqlite")
def test_a_stream_of_awaited_writes_never_starves_the_writer_thread(store: Store) -> None:
    """Submits keep the event loop's group commit busy; an approval written from a worker
    thread still gets its turn at the database, between two of the loop's batches."""
    cap = 3000  # loop writes; the threaded write must land long before this many

    landed = threading.Event()

    def threaded_write() -> str:
        answer = store.write(_insert("from-a-thread"))
        landed.set()
        return str(answer)

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        written = 0

        async def producer(name: str) -> None:
            nonlocal written
            n = 0
            while not landed.is_set() and written < cap:
                await store.write_async(_insert(f"{name}-{n}"))
                n += 1
                written += 1

        await store.write_async(_insert("warm"))
        with ThreadPoolExecutor(1) as pool:
            # Sixteen producers keep writes waiting at every moment: the loop's batches follow
            # one another with no pause between them.
            producers = [asyncio.create_task(producer(f"p{n}")) for n in range(16)]
            await asyncio.sleep(0.01)
            threaded = loop.run_in_executor(pool, threaded_write)
            await asyncio.gather(*producers)
            assert await threaded == "from-a-thread"
            return written

    written = asyncio.run(scenario())
    assert written < cap, "the writer thread never got the database while the loop kept writing"


@pytest.mark.backends("postgresql")
def test_a_group_takes_the_audit_head_before_anything_else(store: Store) -> None:
    """The lock order that keeps groups of two processes from deadlocking: a group holds
    the chain's head from its first statement, before any of its writes locks a row."""
    hold = HeldWrite()

    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(store.write_grouped, hold)
        assert hold.started.wait(10)
        try:
            dsn = store.url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(dsn) as other, pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE NOWAIT")
        finally:
            hold.gate.set()
        assert held.result(10) == "held"


@pytest.mark.backends("postgresql")
def test_grouped_writes_go_on_after_the_server_ends_the_connection(store: Store) -> None:
    """The writer keeps its connection between groups; one the server ended meanwhile is
    found lost before anything of the next group was committed, and that group runs
    again on a fresh connection instead of failing."""

    assert store.write_grouped(_insert("first")) == "first"
    dsn = store.url.replace("postgresql+psycopg://", "postgresql://")
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
    assert store.write_grouped(_insert("second")) == "second"
    assert store.read(lambda conn: actions_repo.get(conn, "second")) is not None


@pytest.mark.backends("postgresql")
def test_the_writer_keeps_its_connection_while_groups_come_and_gives_it_back_when_they_stop(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ping (a round trip) per group: consecutive groups run on one connection, which
    goes back to the pool once the groups pause; the next one takes one afresh."""
    monkeypatch.setattr(store_module, "_PG_KEEP_SECONDS", 0.2)

    def backend(conn: Connection) -> int:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())

    first, second = store.write_grouped(backend), store.write_grouped(backend)
    assert first == second
    deadline = time.monotonic() + 10
    while store.engine.pool.checkedout():  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the writer never gave its connection back"
        time.sleep(0.02)
    assert store.write_grouped(_insert("after")) == "after"


@pytest.mark.backends("postgresql")
def test_a_group_that_cannot_reach_the_server_fails_each_write_and_the_writer_goes_on(store: Store) -> None:
    """No connection to be had (the server is down): each grouped write is told so, and
    the writer thread stays alive to answer the next ones instead of leaving them waiting."""
    down = Store("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    for _ in range(2):
        answers: list[BaseException | None] = []

        def write(answers: list[BaseException | None] = answers) -> None:
            try:
                down.write_grouped(_insert("never"))
                answers.append(None)
            except Exception as exc:
                answers.append(exc)

        waiting = threading.Thread(target=write, daemon=True)  # a daemon: a hang fails, not blocks, the test
        waiting.start()
        waiting.join(20)
        assert answers, "the write was never answered"
        assert isinstance(answers[0], OperationalError) and connection_lost(answers[0]), answers
    down.close()


@pytest.mark.backends("postgresql")
def test_a_postgresql_group_holds_at_most_64_writes(store: Store) -> None:
    """Each write of a group is a subtransaction; past the 64 a backend caches, every
    other session's snapshot slows down. 100 writes queued together go as 64 and 36,
    every one of them committed."""

    def write(i: int) -> Callable[[Connection], Any]:
        def insert_and_tell_transaction(conn: Connection) -> int:
            actions_repo.insert(conn, _values(f"w{i}"))
            return int(conn.exec_driver_sql("SELECT txid_current()").scalar_one())

        return insert_and_tell_transaction

    transactions = run_as_one_group(store, [write(i) for i in range(100)])
    sizes = sorted(transactions.count(t) for t in set(transactions))
    assert sizes == [36, 64]
    assert all(store.read(lambda conn, i=i: actions_repo.get(conn, f"w{i}")) is not None for i in range(100))


@pytest.mark.backends("sqlite")
def test_a_loop_stopping_mid_batch_leaves_no_lock_behind_and_answers_its_writes(store: Store) -> None:
    """The loop's flush task is cancelled (its loop stopping) while its batch waits for
    the database in the committer thread: the batch still gets the database, commits and
    answers, and the lock it took there is released, so later writes are not stuck."""

    holding, cancelled = threading.Event(), threading.Event()

    def writer_thread_busy() -> None:  # holds the database as the writer thread would
        with store._db_lock:
            holding.set()
            cancelled.wait(10)
            time.sleep(0.05)

    async def scenario() -> str:
        busy = threading.Thread(target=writer_thread_busy)
        busy.start()
        assert await asyncio.to_thread(holding.wait, 10)
        write = asyncio.ensure_future(store.write_async(_insert("during")))
        await asyncio.sleep(0.05)  # the batch now waits for the lock in the committer
        assert store._loop_flusher is not None and not store._loop_flusher.done()
        store._loop_flusher.cancel()
        cancelled.set()
        answer = await asyncio.wait_for(write, 10)
        await asyncio.to_thread(busy.join, 10)
        return answer

    assert asyncio.run(scenario()) == "during"
    assert store.read(lambda conn: actions_repo.get(conn, "during")) is not None
    assert store.write(_insert("after-thread")) == "after-thread"  # the lock was not leaked
    assert asyncio.run(store.write_async(_insert("after-loop"))) == "after-loop"

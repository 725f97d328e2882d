"""The database behind one small interface: `read(fn)` and `write(fn)`.

SQLite (the embedded default) sends every write through one writer thread. The
writer takes whatever writes are waiting, runs each in its own SAVEPOINT inside one
transaction (submits, which may run again, under one for all until one fails),
commits once (one fsync, `synchronous=FULL`) and only then answers each
caller: group commit. A caller is told "done" only after its change is on disk, so an
acknowledged action survives `kill -9`.

Submits come from the event loop (`write_async`): the writes awaited together are one
group commit too, run on the loop's own connection (their statements on the loop, the
COMMIT and its fsync in a thread). One lock keeps the two writing connections from
ever holding transactions at the same time. On PostgreSQL an awaited submit that locks
no existing row joins the writer thread's group (`write_grouped`), awaited by the loop.

PostgreSQL runs each write in its own transaction from a connection pool; the row
locks taken inside the transactions serialize what must be serialized, so several
server processes can share one database. They tell each other about changes with
LISTEN/NOTIFY (see `faramesh.storage.notify`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from faramesh.config import shown_database_url
from faramesh.storage import audit_log, group, migrate
from faramesh.storage.errors import connection_lost
from faramesh.storage.notify import Listener, send_held, send_notice

T = TypeVar("T")

_STOP = object()
_BUSY_TIMEOUT_MS = 30_000  # how long a write waits for another process's transaction
_MAX_BATCH = 256
# PostgreSQL: each write in a group is a subtransaction with its own id, and a backend
# caches 64 of them; past that every other session's snapshot has to look them up in
# pg_subtrans (a known slowdown of the whole server), so a group stays within 64.
_MAX_PG_BATCH = 64
# PostgreSQL: the writer thread keeps its connection while groups keep coming and gives
# it back to the pool after this many seconds without one. Taken from the pool for each
# group, the connection was checked with a ping first: a round trip per group, as long
# as any statement in it. The next group after a pause takes (and pings) one afresh.
_PG_KEEP_SECONDS = 1.0


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and pick the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _sqlite_engine(url: str, *, unpooled: bool = False) -> Engine:
    """The engine for a SQLite file; `unpooled` for one that opens a new connection each
    time (the event loop's writing connection: see `Store._loop_connection`)."""
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, Any] = {"poolclass": NullPool} if unpooled else {"pool_size": 16, "max_overflow": 32}
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **sizes)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the sqlite3 module) decide when transactions begin,
        # so SAVEPOINT and BEGIN IMMEDIATE behave as written.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        # Temporary files in memory: a group commit's savepoints journal the pages each job
        # changes, and on disk that journal was a file created, written and deleted per batch.
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # On the driver's connection: a statement through SQLAlchemy's execution path
        # costs several times the BEGIN itself, and every group commit begins one.
        sql = "BEGIN IMMEDIATE" if conn.info.get("writer") else "BEGIN"
        raw = conn.connection.driver_connection
        assert raw is not None, "the connection is closed"
        try:
            raw.execute(sql)
        except sqlite3.Error as exc:  # as SQLAlchemy would raise it (a busy database: OperationalError)
            raise DBAPIError.instance(sql, (), exc, sqlite3.Error, dialect=conn.dialect) from exc

    return engine


def database_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for PostgreSQL and in-memory SQLite."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return Path(parsed.database).expanduser().absolute()
    return None


Outcomes = list[tuple[bool, Any]]


def _run_jobs(
    conn: Connection,
    fns: list[Callable[[Connection], Any]],
    head: tuple[int, str] | None = None,
    *,
    rerunnable: bool = False,
) -> Outcomes:
    """Run writes inside the open transaction, each succeeding or failing on its own:
    (True, result) or (False, exception) per write. A write alone needs no SAVEPOINT:
    its failure is raised and rolls back the transaction, which holds nothing else.
    Writes run together hold the audit chain's head and their change notices in memory
    (storage/group.py; `head`: the head the caller read and locked already), written
    out once when they are done.

    `rerunnable`: the caller vouches that every write may run again after what it did
    was rolled back (a function of the database alone: submits). The group then runs
    under one SAVEPOINT, and only if a write fails is it rolled back and run again with
    a SAVEPOINT per write; nearly every group succeeds whole, and on PostgreSQL each
    savepoint is a round trip."""
    if len(fns) == 1 and head is None:
        return [(True, fns[0](conn))]
    outcomes: Outcomes | None = None
    with group.holding(conn, head) as held:
        if len(fns) == 1:
            outcomes = [(True, fns[0](conn))]
        else:
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None
            savepoints = _Savepoints(dbapi.cursor(), several=conn.dialect.name == "postgresql")
            if rerunnable:
                outcomes = _all_at_once(conn, fns, held, savepoints)
            if outcomes is None:
                outcomes = _one_by_one(conn, fns, held, savepoints)
    audit_log.write_held_head(conn, held)
    send_held(conn, held)
    return outcomes


def _all_at_once(
    conn: Connection, fns: list[Callable[[Connection], Any]], held: group.Group, savepoints: _Savepoints
) -> Outcomes | None:
    """Every write under one SAVEPOINT: their outcomes, or None (and nothing left of any
    of them) when one failed."""
    saved = held.save()
    savepoints.begin()
    try:
        values = [fn(conn) for fn in fns]
    except BaseException as exc:
        _roll_back_after(savepoints, exc)
        held.restore(saved)
        held.marks.clear()
        return None
    savepoints.keep()
    return [(True, value) for value in values]


def _one_by_one(
    conn: Connection, fns: list[Callable[[Connection], Any]], held: group.Group, savepoints: _Savepoints
) -> Outcomes:
    """Each write in its own SAVEPOINT, so a failing one leaves the others' writes.
    Issued on the driver's cursor: SQLAlchemy's nested transactions cost more."""
    outcomes: Outcomes = []
    for fn in fns:
        saved = held.save()
        savepoints.begin()
        try:
            value = fn(conn)
        except BaseException as exc:
            _roll_back_after(savepoints, exc)
            held.restore(saved)  # what it held was rolled back with it
            held.marks.clear()  # and so were any savepoints it left open
            outcomes.append((False, exc))
        else:
            savepoints.keep()
            outcomes.append((True, value))
    return outcomes


def _roll_back_after(savepoints: _Savepoints, failure: BaseException) -> None:
    """Roll back to the savepoint of a write that raised `failure`. When even that fails
    (the connection is gone), the group fails with the write's own error, which says
    why, not with the rollback's."""
    try:
        savepoints.roll_back()
    except Exception:
        raise failure from None


class _Savepoints:
    """Each write's SAVEPOINT in a group, in as few round trips as the driver allows.

    With `several` (PostgreSQL, where one call may carry several statements without
    parameters), a kept write's RELEASE travels with the next write's SAVEPOINT, and
    the last one is left to the COMMIT, which ends it anyway: one round trip per write
    instead of two, on a group whose every statement is a round trip. SQLite (local,
    one statement per call) releases each at once.
    """

    __slots__ = ("cursor", "pending", "several")

    _BEGIN = "SAVEPOINT faramesh_job"
    _RELEASE = "RELEASE SAVEPOINT faramesh_job"
    _ROLLBACK = "ROLLBACK TO SAVEPOINT faramesh_job"

    def __init__(self, cursor: Any, *, several: bool) -> None:
        self.cursor = cursor
        self.several = several
        self.pending = False  # a kept write's savepoint is still open

    def begin(self) -> None:
        if self.pending:
            self.cursor.execute(f"{self._RELEASE}; {self._BEGIN}")
            self.pending = False
        else:
            self.cursor.execute(self._BEGIN)

    def keep(self) -> None:
        if self.several:
            self.pending = True
        else:
            self.cursor.execute(self._RELEASE)

    def roll_back(self) -> None:
        if self.several:
            self.cursor.execute(f"{self._ROLLBACK}; {self._RELEASE}")
        else:
            self.cursor.execute(self._ROLLBACK)
            self.cursor.execute(self._RELEASE)


def _answer(batch: list[_Job], outcomes: Outcomes) -> None:
    for job, (ok, value) in zip(batch, outcomes, strict=True):
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


def _answer_all(batch: list[_Job], exc: BaseException) -> None:
    for job in batch:
        job.future.set_exception(exc)


async def _shielded(done: asyncio.Future[T]) -> T:
    """Await `done` without cancelling it when the caller is cancelled. A caller that went
    away leaves nobody to read a failure: it is read here, so asyncio does not report an
    exception that was never retrieved (the write failed; nobody was told it landed)."""
    done.add_done_callback(lambda f: f.cancelled() or f.exception())
    return await asyncio.shield(done)


def _busy_timeout(conn: Connection, ms: int) -> None:
    """Set how long SQLite waits for another process's lock, outside any transaction
    (on the driver's connection: through SQLAlchemy the statement would begin one)."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    dbapi.cursor().execute(f"PRAGMA busy_timeout={int(ms)}")


class _Job:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[Connection], Any]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()


class Store:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        # Tells this store's own change notices apart from other processes' ones.
        self.instance_id = secrets.token_hex(8)
        self.dialect = make_url(self.url).get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(self.url)
            self._loop_engine = _sqlite_engine(self.url, unpooled=True)
            group.follow_savepoints(self._loop_engine)
        elif self.dialect == "postgresql":
            self.engine = create_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_recycle=1800
            )
        else:
            raise ValueError(f"unsupported database URL {shown_database_url(url)!r}: use sqlite:/// or postgresql://")
        group.follow_savepoints(self.engine)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._closed = False
        # Held while a transaction is open on either writing connection (the writer
        # thread's, the event loop's), so the two never wait on each other inside SQLite.
        self._db_lock = threading.Lock()
        self._writer_waiting = False
        self._loop_conn: Connection | None = None
        self._loop_jobs: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]] = []
        # Set while no flush task runs: nothing accepted on the loop is left to commit.
        self._loop_idle = threading.Event()
        self._loop_idle.set()
        self._loop_flusher: asyncio.Task[None] | None = None
        # The loop's batches wait and commit in a thread of their own: a shared pool could
        # be full of callers waiting for the writer, which waits for this commit.
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faramesh-commit")

    # -- schema -------------------------------------------------------------
    def upgrade(self) -> None:
        migrate.upgrade(self.engine)

    def is_current(self) -> bool:
        return migrate.current_revision(self.engine) == migrate.head_revision()

    @property
    def shared(self) -> bool:
        """True when other server processes may write to the same database."""
        return self.dialect == "postgresql"

    # -- reads --------------------------------------------------------------
    def read(self, fn: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            return fn(conn)

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    # -- writes -------------------------------------------------------------
    @property
    def embedded(self) -> bool:
        """True for the embedded database (SQLite): every write goes through this
        process (its writer thread, or the event loop's group commit, `write_async`);
        statements are local calls, not round trips over the network."""
        return self.dialect == "sqlite"

    def write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in a transaction and return its result once it is durable."""
        if self._closed:
            raise RuntimeError("store is closed")
        if not self.embedded:
            with self.engine.begin() as conn:
                return fn(conn)
        result: T = self._enqueue(fn).result()
        return result

    def write_grouped(self, fn: Callable[[Connection], T]) -> T:
        """`write` for a write that may share its transaction with others (group commit).

        On SQLite every write does. On PostgreSQL the caller vouches that `fn` locks no
        row that exists already: it reads, inserts and appends to the audit log (an
        allowed or denied submit without limits); and that `fn` may run again once what
        it did was rolled back (a function of the database alone), so that a group can
        run under one SAVEPOINT (`_run_jobs`). Such writes wait together for this
        process's writer thread, which runs them in one transaction that takes the audit
        chain's head first: one BEGIN, COMMIT and head
        lock per group instead of per write. A write that locks existing rows (approvals,
        re-attaching a held action, limit counters) must use `write`: a group holding the
        head while it waits for such a row could deadlock with a transaction that holds
        the row and waits for the head.
        """
        if self.embedded:
            return self.write(fn)
        if self._closed:
            raise RuntimeError("store is closed")
        result: T = self._enqueue(fn).result()
        return result

    async def write_async(self, fn: Callable[[Connection], T], *, grouped: bool = False) -> T:
        """`write` (or, with `grouped`, `write_grouped`) for a caller on an event loop: the
        loop serves other requests until the write is durable. Cancelling the caller does
        not cancel the write: once accepted, it is written, as a worker thread's would be.
        The caller vouches that `fn` may run again once what it did was rolled back (a
        function of the database alone: a submit), as for `write_grouped`.

        SQLite: the writes awaited together are one group commit, run by the loop itself
        (`_write_on_loop`). PostgreSQL: a grouped write joins the writer thread's next
        group and the loop awaits it there, with no worker thread in between; any other
        write runs in a worker thread in its own transaction.
        """
        if self.embedded:
            return await self._write_on_loop(fn)
        if not grouped:  # in the worker threads the HTTP routes use (AnyIO's, 40 at most)
            return await anyio.to_thread.run_sync(self.write, fn)
        # Shielded: the caller going away must not cancel a write the writer may be running.
        result: T = await _shielded(asyncio.wrap_future(self._enqueue(fn)))
        return result

    async def _write_on_loop(self, fn: Callable[[Connection], T]) -> T:
        """SQLite's `write_async`. Writes awaited together are one group commit, run by the
        loop itself: their statements execute here (local, microseconds, no other thread
        involved) and only the COMMIT with its fsync goes to a thread. A thread per
        statement would hand the interpreter lock back and forth between the writer and
        the loop several times per write. When the writer thread holds the database, or
        another process does (the CLI on the same file), the batch waits in a thread
        instead, never on the loop.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        with self._writer_lock:
            if self._closed:
                raise RuntimeError("store is closed")
            self._loop_jobs.append((fn, done))
            start = self._loop_idle.is_set()  # no flush task yet: start one
            self._loop_idle.clear()
        if start:
            self._loop_flusher = loop.create_task(self._flush_loop_jobs())
        # Shielded: the caller going away must not drop a write already accepted.
        return await _shielded(done)

    async def _flush_loop_jobs(self) -> None:
        while True:
            with self._writer_lock:
                batch = self._loop_jobs[:_MAX_BATCH]
                del self._loop_jobs[: len(batch)]
                if not batch:
                    self._loop_idle.set()
                    return
            try:
                outcomes = await self._commit_on_loop([fn for fn, _ in batch])
            except BaseException as exc:  # the commit itself failed: nothing is durable
                outcomes = [(False, exc)] * len(batch)
            for (_, done), (ok, value) in zip(batch, outcomes, strict=True):
                if done.cancelled():
                    continue
                if ok:
                    done.set_result(value)
                else:
                    done.set_exception(value)

    async def _commit_on_loop(self, fns: list[Callable[[Connection], Any]]) -> Outcomes:
        # The writer thread writing, or waiting to: wait for the database in a thread.
        if self._writer_waiting or not self._db_lock.acquire(blocking=False):
            await self._in_committer(self._db_lock.acquire)
        clean = False  # the connection is left outside any transaction
        try:
            conn = self._loop_connection()
            try:
                trans = conn.begin()  # BEGIN IMMEDIATE; the loop's connection never waits for it
            except OperationalError:  # another process holds the database: wait in a thread
                outcomes = await self._in_committer(self._write_waiting, conn, fns)
                clean = True
                return outcomes
            try:
                outcomes = _run_jobs(conn, fns, rerunnable=True)
            except BaseException as exc:  # a write alone failed: nothing else to keep
                trans.rollback()
                # A refusal (a constraint, the service's own checks) leaves the connection
                # as it was; a database error (a read-only or failing disk) may not: a
                # connection that met a read-only file can stay read-only after it is
                # writable again, so the next batch starts on a fresh one.
                clean = not isinstance(exc, DBAPIError) or isinstance(exc, IntegrityError)
                raise
            await self._in_committer(trans.commit)  # the fsync, off the loop
            clean = True
            return outcomes
        finally:
            if not clean:  # a failed commit or rollback (a full disk, say): start afresh next time
                self._drop_loop_connection()
            self._db_lock.release()

    async def _in_committer(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` in the committer thread and wait for it to end, even when this task
        is cancelled: a lock taken or a commit begun there must never be left behind.
        The flush task is cancelled only when its loop stops; it then still finishes
        (and answers) the writes it accepted."""
        done = self._committer.submit(fn, *args)
        try:
            return await asyncio.shield(asyncio.wrap_future(done))
        except asyncio.CancelledError:
            return done.result()

    def _drop_loop_connection(self) -> None:
        conn, self._loop_conn = self._loop_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()
            with contextlib.suppress(Exception):
                conn.close()

    def _loop_connection(self) -> Connection:
        if self._loop_conn is None:
            # Opened now, not taken from the readers' pool: SQLite opens a file it cannot
            # write (a read-only or immutable file, for a while) read-only, and such a
            # connection stays read-only after the file is writable again.
            conn = self._loop_engine.connect()
            conn.info["writer"] = True
            _busy_timeout(conn, 0)
            self._loop_conn = conn
        return self._loop_conn

    @staticmethod
    def _write_waiting(conn: Connection, fns: list[Callable[[Connection], Any]]) -> Outcomes:
        """The loop's batch, in a thread, waiting for the database like the writer does."""
        _busy_timeout(conn, _BUSY_TIMEOUT_MS)
        try:
            with conn.begin():
                return _run_jobs(conn, fns, rerunnable=True)
        finally:
            _busy_timeout(conn, 0)

    def _enqueue(self, fn: Callable[[Connection], Any]) -> Future[Any]:
        self._ensure_writer()
        job = _Job(fn)
        # Under the lock close() takes too: a job is queued either before the writer's stop
        # mark (it is written before the writer exits) or not at all (refused), never after
        # it, where nobody would ever answer its caller.
        with self._writer_lock:
            if self._closed:
                raise RuntimeError("store is closed")
            self._queue.put(job)
        return job.future

    def _ensure_writer(self) -> None:
        if self._writer is not None:
            return
        with self._writer_lock:
            if self._writer is None:
                thread = threading.Thread(target=self._write_loop, name="faramesh-writer", daemon=True)
                thread.start()
                self._writer = thread

    def _write_loop(self) -> None:
        # SQLite: one connection for the thread's life. PostgreSQL: one from the pool,
        # kept while groups keep coming (see _PG_KEEP_SECONDS).
        conn = self.engine.connect() if self.embedded else None
        if conn is not None:
            conn.info["writer"] = True
        try:
            while True:
                if conn is not None and not self.embedded:
                    try:
                        item = self._queue.get(timeout=_PG_KEEP_SECONDS)
                    except queue.Empty:
                        conn.close()  # back to the pool
                        conn = None
                        continue
                else:
                    item = self._queue.get()
                if item is _STOP:
                    return
                batch: list[_Job] = [item]
                stop = False
                while len(batch) < (_MAX_BATCH if self.embedded else _MAX_PG_BATCH):
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop = True
                        break
                    batch.append(nxt)
                if self.embedded:
                    assert conn is not None
                    self._run_batch(conn, batch)
                else:
                    conn = self._run_shared_batch(conn, batch)
                if stop:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _run_batch(self, conn: Connection, batch: list[_Job]) -> None:
        """SQLite: the writer thread's group, any writes, each in its own SAVEPOINT."""
        try:
            self._writer_waiting = True  # the loop's next batch lets this one go first
            with self._db_lock:
                self._writer_waiting = False
                with conn.begin():
                    outcomes = _run_jobs(conn, [job.fn for job in batch])
        except BaseException as exc:  # the job (alone) or the commit failed: nothing is durable
            _answer_all(batch, exc)
            return
        _answer(batch, outcomes)

    def _run_shared_batch(self, conn: Connection | None, batch: list[_Job]) -> Connection | None:
        """PostgreSQL: a group of grouped writes (submits) on the writer's connection (or
        a fresh one from the pool); returns the connection to keep, or None.

        A connection found lost before the COMMIT was sent (the server ended it while it
        was kept) takes nothing of the group with it, and the writes may run again: the
        group runs once more on a fresh connection. Lost during the COMMIT, whether the
        group landed is unknown, and each write is told what failed."""
        fns = [job.fn for job in batch]
        for retry in (False, True):
            committing = False
            try:
                conn = conn or self.engine.connect()
                with conn.begin():
                    # The audit chain's head first: every grouped transaction then waits
                    # for the one before it before it locks anything else, so two
                    # processes' groups can never each hold what the other one needs.
                    head = audit_log.lock_head(conn)
                    outcomes = _run_jobs(conn, fns, head, rerunnable=True)
                    committing = True
            except BaseException as exc:  # the job (alone) or the commit failed: nothing is durable
                lost = conn is None or connection_lost(exc) or conn.invalidated or conn.closed
                if lost and conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
                if lost and not committing and not retry:
                    continue
                _answer_all(batch, exc)
                return conn
            _answer(batch, outcomes)
            return conn
        return conn

    # -- readiness --------------------------------------------------------------
    def probe_read(self) -> None:
        """Prove that the database answers a query; raises what the query raised."""
        self.read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())

    def probe_write(self) -> None:
        """Prove that a write reaches the database now; raises what the write raised.

        A committed update that changes nothing (the schema version row set to itself):
        it takes the same path as every write (SQLite's writer thread and its commit to
        the WAL; a PostgreSQL transaction), so a read-only database or file system, or a
        read-only PostgreSQL session (a standby, `default_transaction_read_only`), fail it.
        """
        self.write(lambda conn: conn.exec_driver_sql("UPDATE alembic_version SET version_num = version_num"))

    # -- change notices (PostgreSQL) -------------------------------------------
    def notify(self, conn: Connection, *, type: str, action_id: str | None, seq: int) -> None:
        """Inside a write: tell the other server processes about a change once it commits."""
        if self.dialect == "postgresql":
            send_notice(conn, {"type": type, "action_id": action_id, "seq": seq, "origin": self.instance_id})

    def listener(
        self,
        on_notice: Callable[[dict[str, Any], bool], None],
        on_connect: Callable[[bool], None] | None = None,
    ) -> Listener:
        """A (not yet started) listener for change notices; PostgreSQL only."""
        if self.dialect != "postgresql":
            raise RuntimeError("change notices need PostgreSQL")
        dsn = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        return Listener(dsn, origin=self.instance_id, on_notice=on_notice, on_connect=on_connect)

    def close(self) -> None:
        """Stop taking writes, finish every write already queued (each caller gets its
        answer once it is on disk), then release the connections."""
        with self._writer_lock:
            if self._closed:
                return
            self._closed = True
            writer = self._writer
            if writer is not None:
                self._queue.put(_STOP)
        self._loop_idle.wait(timeout=30)  # the event loop's accepted writes are committed
        if writer is not None:
            writer.join(timeout=30)
        with self._db_lock:
            if self._loop_conn is not None:
                self._loop_conn.close()
        self._committer.shutdown(wait=False)
        if self.embedded:
            self._loop_engine.dispose()
        self.engine.dispose()

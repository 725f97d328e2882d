"""Change notices between server processes that share one PostgreSQL database.

A transition sends `pg_notify` inside its own transaction, so PostgreSQL delivers the
notice only if the change commits, and delivers notices in commit order. Every server
process keeps one extra connection that LISTENs on the channel (`Listener`) and hands
each notice to a callback, which wakes the waiters and event streams of that process.

Notices are lost only while the listening connection is down. The listener reconnects
with backoff and then calls `on_connect(first=False)`, so its owner can catch up from
the audit log; waiters also re-read the database every second, so a lost notice costs
at most a short delay, never a missed decision.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.engine import Connection

from faramesh.storage import group
from faramesh.storage.group import Group
from faramesh.storage.prepared import Prepared

log = logging.getLogger("faramesh.storage.notify")

CHANNEL = "faramesh_events"
# Every write that changes an action sends one: straight to the driver (see prepared.py).
_SEND = Prepared(text("SELECT pg_notify(:channel, :payload)"))
# A group commit's notices in one statement, sent in the order given.
_SEND_ALL = Prepared(text("SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) AS payload"))


def send_notice(conn: Connection, notice: Mapping[str, Any]) -> None:
    """Queue a notice in the caller's transaction; listeners get it when (if) it commits.
    Inside a group commit it waits for the group's end (`send_held`)."""
    payload = orjson.dumps(dict(notice)).decode()
    held = group.current(conn)
    if held is not None:
        held.notices.append(payload)
        return
    _SEND.execute(conn, {"channel": CHANNEL, "payload": payload})


def send_held(conn: Connection, held: Group) -> None:
    """After a group's writes: send the notices they queued, in one statement."""
    if held.notices:
        _SEND_ALL.execute(conn, {"channel": CHANNEL, "payloads": held.notices})


def send_notice_if_shared(conn: Connection, notice: Mapping[str, Any]) -> None:
    """`send_notice` on PostgreSQL; other databases have no other server processes to tell."""
    if conn.dialect.name == "postgresql":
        send_notice(conn, notice)


class Listener:
    """One LISTEN connection in a daemon thread.

    `on_notice(notice, own)` runs for every notice in commit order; `own` is true for
    notices sent by the store whose `origin` this listener was given. `on_connect(first)`
    runs after each successful LISTEN, before any notice that follows it.
    """

    def __init__(
        self,
        dsn: str,
        *,
        origin: str,
        on_notice: Callable[[dict[str, Any], bool], None],
        on_connect: Callable[[bool], None] | None = None,
        poll_seconds: float = 0.5,  # also how long stop() may wait
        max_backoff: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.origin = origin
        self.on_notice = on_notice
        self.on_connect = on_connect
        self.poll_seconds = poll_seconds
        self.max_backoff = max_backoff
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Listener:
        self._thread = threading.Thread(target=self._run, name="faramesh-listener", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg

        backoff = 0.1
        first = True
        while not self._stop.is_set():
            try:
                # TCP keepalives find a silently dead peer; a closed one raises at once.
                with psycopg.connect(
                    self.dsn,
                    autocommit=True,
                    application_name="faramesh-listener",
                    connect_timeout=5,
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    if self.on_connect is not None:
                        try:
                            self.on_connect(first)
                        except Exception:  # a failed catch-up must not stop listening; waiters still re-read
                            log.exception("catching up after connecting failed")
                    first = False
                    backoff = 0.1
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=self.poll_seconds):
                            self._dispatch(note.payload)
            except Exception as exc:  # psycopg.Error, OSError: reconnect, never die
                self.connected.clear()
                if self._stop.is_set():
                    return
                log.warning("change listener lost its connection (%s); reconnecting in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
        self.connected.clear()

    def _dispatch(self, payload: str) -> None:
        try:
            notice = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("ignoring a malformed change notice: %.200s", payload)
            return
        if not isinstance(notice, dict):
            return
        try:
            self.on_notice(notice, notice.get("origin") == self.origin)
        except Exception:
            log.exception("handling a change notice failed")

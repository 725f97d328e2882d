"""Change notices between stores on one PostgreSQL database (LISTEN/NOTIFY)."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from faramesh.storage import Store

Notices = queue.Queue[tuple[dict[str, Any], bool]]


@pytest.fixture
def stores(pg_url: str) -> Iterator[tuple[Store, Store]]:
    a, b = Store(pg_url), Store(pg_url)
    a.upgrade()
    yield a, b
    a.close()
    b.close()


def listen(store: Store) -> tuple[Notices, Any]:
    notices: Notices = queue.Queue()
    listener = store.listener(lambda notice, own: notices.put((notice, own))).start()
    assert listener.connected.wait(10)
    return notices, listener


def test_a_committed_change_reaches_every_listener_marked_by_origin(stores: tuple[Store, Store]) -> None:
    a, b = stores
    mine, a_listener = listen(a)
    theirs, b_listener = listen(b)
    try:
        a.write(lambda conn: a.notify(conn, type="action.approved", action_id="x1", seq=7))
        notice, own = theirs.get(timeout=10)
        assert notice | {"origin": None} == {"type": "action.approved", "action_id": "x1", "seq": 7, "origin": None}
        assert own is False
        notice, own = mine.get(timeout=10)
        assert notice["action_id"] == "x1" and own is True
    finally:
        a_listener.stop()
        b_listener.stop()


def test_a_rolled_back_change_sends_nothing(stores: tuple[Store, Store]) -> None:
    a, b = stores
    theirs, listener = listen(b)

    def fails(conn: Any) -> None:
        a.notify(conn, type="action.approved", action_id="lost", seq=1)
        raise RuntimeError("the transaction fails after notifying")

    try:
        with pytest.raises(RuntimeError):
            a.write(fails)
        a.write(lambda conn: a.notify(conn, type="action.denied", action_id="kept", seq=2))
        notice, _ = theirs.get(timeout=10)
        assert notice["action_id"] == "kept"  # the first notice, had it been sent, would come first
        assert theirs.empty()
    finally:
        listener.stop()


def test_listener_reconnects_after_its_connection_is_killed(stores: tuple[Store, Store]) -> None:
    a, b = stores
    connects: queue.Queue[bool] = queue.Queue()
    notices: Notices = queue.Queue()
    listener = b.listener(lambda n, own: notices.put((n, own)), connects.put).start()
    try:
        assert connects.get(timeout=10) is True  # the first connection
        a.write(
            lambda conn: conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'faramesh-listener' AND datname = current_database()"
                )
            )
        )
        assert connects.get(timeout=10) is False  # a reconnection: its owner catches up
        a.write(lambda conn: a.notify(conn, type="action.created", action_id="after", seq=3))
        notice, _ = notices.get(timeout=10)
        assert notice["action_id"] == "after"
    finally:
        listener.stop()


def test_sqlite_store_sends_no_notices_and_cannot_listen(tmp_path: Any) -> None:
    store = Store(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        store.upgrade()
        assert not store.shared
        store.write(lambda conn: store.notify(conn, type="action.created", action_id="x", seq=1))  # a no-op
        with pytest.raises(RuntimeError):
            store.listener(lambda n, own: None)
    finally:
        store.close()

"""Closing the SQLite store (server shutdown) finishes the writes already queued and never
leaves a caller without an answer."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any

import pytest

from faramesh.storage import Store
from faramesh.storage.store import _STOP


class _StopWatch(queue.SimpleQueue[Any]):
    """The writer's queue, holding back a job's put until close() has queued its stop mark
    (or, when close() cannot while the job is being queued, for a bounded time)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.job_arriving = threading.Event()
        self.stop_queued = threading.Event()

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is _STOP:
            super().put(item)
            self.stop_queued.set()
            return
        if not self.armed:
            super().put(item)
            return
        self.job_arriving.set()
        self.stop_queued.wait(timeout=2)
        super().put(item)


def test_a_write_racing_close_is_written_or_refused_never_left_hanging(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'close.db'}")
    watch = _StopWatch()
    store._queue = watch  # before the writer thread starts reading it
    store.write(lambda conn: conn.exec_driver_sql("CREATE TABLE t (x INTEGER)"))
    watch.armed = True
    outcome: dict[str, Any] = {}

    def writer() -> None:
        try:
            outcome["value"] = store.write(lambda conn: conn.exec_driver_sql("INSERT INTO t VALUES (1)").rowcount)
        except RuntimeError as exc:
            outcome["refused"] = exc

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    assert watch.job_arriving.wait(10)
    store.close()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the write was queued behind the writer's stop mark and never answered"
    reopened = Store(f"sqlite:///{tmp_path / 'close.db'}")
    try:
        rows = reopened.read(lambda conn: conn.exec_driver_sql("SELECT count(*) FROM t").scalar())
    finally:
        reopened.close()
    assert ("value" in outcome and rows == 1) or ("refused" in outcome and rows == 0), (outcome, rows)


def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'closed.db'}")
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.write(lambda conn: None)

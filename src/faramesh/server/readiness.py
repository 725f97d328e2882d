"""Readiness: the database must take a write, not only answer a read.

A database that still answers `SELECT 1` can refuse every write (a read-only file or
file system, a full disk, a PostgreSQL standby or read-only session); a replica in
that state must leave the load balancer. The write probe is cheap but not free, so
its result is kept for a few seconds however often `/ready` is asked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from faramesh.storage import Store

log = logging.getLogger("faramesh.server")

PROBE_INTERVAL = 2.0  # seconds a probe's result is reused


class WriteProbe:
    """A cached `store.probe_write()`; thread-safe, one probe at a time."""

    def __init__(self, store: Store, clock: Callable[[], float], interval: float = PROBE_INTERVAL) -> None:
        self.store = store
        self.clock = clock
        self.interval = interval
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._problem: str | None = None

    def problem(self) -> str | None:
        """None while writes work; else why the last probe failed."""
        with self._lock:
            now = self.clock()
            if self._checked_at is not None and 0 <= now - self._checked_at < self.interval:
                return self._problem
            try:
                self.store.probe_write()
            except Exception as exc:  # any failure means not ready
                # The answer (an open page) names only the kind of error; the log has the message.
                problem = type(exc).__name__
                if problem != self._problem:
                    log.error("readiness: the database refuses writes: %s: %s", problem, _first_line(exc))
                self._problem = problem
            else:
                if self._problem is not None:
                    log.warning("readiness: the database takes writes again")
                self._problem = None
            self._checked_at = now
            return self._problem


def _first_line(exc: BaseException) -> str:
    # SQLAlchemy appends the statement and a help link on further lines; the first says what failed.
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0][:200] if text else "no detail"

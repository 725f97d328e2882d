"""Several server processes on one port (`serve --workers N`, PostgreSQL only).

One Python process is bounded by its interpreter lock: the HTTP stack, authentication,
validation and the service's own work all take turns on one core. The parent binds the
listening socket, forks N workers that each build their own app and database pool and
accept from the shared socket, and forwards SIGTERM and SIGHUP to them (each worker
drains its own waits and streams, and reloads its own policy). The workers are replicas
on one database: approvals reach waits in another worker through PostgreSQL's change
notices, exactly as between replicas on different machines. With SQLite there is one
writer per database, and no change notices between processes, so it is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("faramesh.server")

FORWARDED = (signal.SIGTERM, signal.SIGHUP)


def serve_forked(workers: int, sock: socket.socket, run_worker: Callable[[socket.socket], bool]) -> int:
    """Run `run_worker(sock)` in `workers` forked processes until all have exited.

    Returns 0 when every worker stopped cleanly, 1 otherwise. When one worker exits on
    its own (a crash), the others are stopped too, so a supervisor restarts the whole
    server instead of leaving it short of workers.
    """
    children: set[int] = set()
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker: serve, then leave without running the parent's cleanup
            code = 1
            try:
                code = 0 if run_worker(sock) else 1
            except BaseException:
                log.exception("worker failed")
            finally:
                os._exit(code)
        children.add(pid)

    stopping = False

    def forward(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        # Ctrl-C reaches the workers from the terminal already; others get SIGTERM.
        sent = signal.SIGTERM if sig == signal.SIGINT else sig
        if sent == signal.SIGTERM:
            stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sent)

    for sig in (*FORWARDED, signal.SIGINT):
        signal.signal(sig, forward)
    status = 0
    try:
        while children:
            pid, wait_status = os.wait()
            children.discard(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            # uvicorn re-raises the signal it stopped on once it has shut down cleanly.
            if code != 0 and not (stopping and -code in (signal.SIGTERM, signal.SIGINT)):
                status = 1
            if not stopping:
                log.error("worker %d exited; stopping the other workers", pid)
                stopping = True
                for other in list(children):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(other, signal.SIGTERM)
    finally:
        sock.close()
    return status

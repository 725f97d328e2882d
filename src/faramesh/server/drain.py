"""Stopping without breaking the agents that wait: uvicorn with a hook at signal time.

uvicorn stops listening on SIGTERM, then waits (up to `timeout_graceful_shutdown`) for the
open connections to finish, and only then runs the app's lifespan shutdown. A long-poll
wait or an event stream never finishes by itself, so without a hook it would be cut after
the timeout (the client saw an HTTP 500). `DrainingServer` tells the app at the moment the
signal arrives (`begin_drain`): open waits answer 503 with Retry-After and streams end at
once, so the connections close, in-flight writes complete, and the process exits promptly.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from faramesh.server.app import begin_drain


class DrainingServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, app: FastAPI, *, after_startup: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self.faramesh_app = app
        self._drain_started = False
        self._after_startup = after_startup

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)  # the app's lifespan has started; listening now
        if self._after_startup is not None and not self.should_exit:
            self._after_startup()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # This runs as a signal handler, possibly while the loop's thread holds a lock the
        # drain needs: schedule the drain on the loop instead of running it here. It may
        # also interrupt a request's task, whose context (its action id for the log lines)
        # the callback would inherit: the drain belongs to no request, so an empty context.
        if not self._drain_started:
            self._drain_started = True
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not serving yet: nothing is open to drain
                pass
            else:
                loop.call_soon_threadsafe(begin_drain, self.faramesh_app, context=contextvars.Context())
        super().handle_exit(sig, frame)

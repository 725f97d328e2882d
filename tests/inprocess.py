"""The real app in this process: `create_app(...)` behind httpx's ASGI transport.

No server process, no port, no start-up wait: each request goes through the real ASGI
stack (middleware, routing, auth, the service, a real SQLite file or PostgreSQL
database) on the app's own event loop in a background thread, with the app's lifespan
(sweeper, policy watcher, webhook dispatcher) running as in `faramesh serve`.
`SyncASGITransport` lets sync code (tests, the SDK's `transport=`) call it; requests
from several threads run concurrently on that loop. The service's
clock is a `FakeClock`, so expiry, limits and time windows move with `advance()`
instead of sleeps.

Responses are buffered, so endless streams (SSE, the dashboard's live updates)
stay on real servers (`tests.conftest.ServerProcess`); `/wait?timeout=...` works.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from faramesh.config import Settings
from faramesh.model import Role
from faramesh.observability import Telemetry
from faramesh.policy import Policy
from faramesh.server.app import create_app, load_policy
from faramesh.server.policy_reload import load_shadow_policy
from faramesh.service import Governor
from faramesh.service import keys as service_keys
from faramesh.storage import Store

BASE_URL = "http://testserver"
IN_PROCESS_SECRET = "in-process test server secret; never used in production"


class FakeClock:
    """A settable wall clock for the service: starts at the real time, moves only on `advance`."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds`; returns the new time."""
        assert seconds >= 0, "time does not go backwards"
        with self._lock:
            self._now += seconds
            return self._now


class SyncASGITransport(httpx.BaseTransport):
    """A sync httpx transport that runs each request on the app's event loop (another thread)."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def run() -> httpx.Response:
            req = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            response = await self._asgi.handle_async_request(req)
            content = await response.aread()  # ASGITransport buffers the whole response anyway
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()


@contextlib.contextmanager
def running_app(app: Any, *, stop_within: float = 30) -> Iterator[asyncio.AbstractEventLoop]:
    """Run `app`'s lifespan on a new event loop in a daemon thread; yields the loop.

    httpx's ASGITransport sends no lifespan events, so the app's lifespan context is
    entered here (startup before the first request, shutdown on exit).
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="inprocess-app", daemon=True)
    thread.start()
    started = threading.Event()
    stop = asyncio.Event()

    async def lifespan() -> None:
        async with app.router.lifespan_context(app):
            started.set()
            await stop.wait()

    task = asyncio.run_coroutine_threadsafe(lifespan(), loop)
    try:
        while not started.wait(0.01):
            if task.done():
                task.result()  # raises why the app did not start
        yield loop
    finally:
        loop.call_soon_threadsafe(stop.set)
        try:
            task.result(timeout=stop_within)
        except concurrent.futures.TimeoutError:
            raise AssertionError(
                f"the app's lifespan did not stop within {stop_within:g}s\n{_where_everything_is(loop)}"
            ) from None
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()


def _where_everything_is(loop: asyncio.AbstractEventLoop) -> str:
    """Every thread's stack and every task left on `loop`: what a shutdown that hangs waits on."""
    out = io.StringIO()
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        out.write(f"--- thread {names.get(ident, ident)}\n{''.join(traceback.format_stack(frame))}")
    for task in list(asyncio.all_tasks(loop)):
        out.write(f"--- task {task.get_name()}\n")
        awaited: Any = task.get_coro()
        while awaited is not None:  # follow the await chain down to what it waits on
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
            frame = frame or getattr(awaited, "gi_frame", None)
            if frame is not None:
                out.write(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}\n")
            nxt = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
            nxt = nxt or getattr(awaited, "gi_yieldfrom", None)
            if nxt is not None and frame is not None and not hasattr(nxt, "cr_frame"):
                # An async generator's asend() hides the generator; contextlib keeps it as self.gen.
                nxt = getattr(frame.f_locals.get("self"), "gen", None) or nxt
            awaited = nxt
        out.write(f"  waits on {task._fut_waiter!r}\n")  # type: ignore[attr-defined]
    return out.getvalue()


class InProcessServer:
    """One app instance with its database, fake clock, bootstrap admin key and HTTP client.

    Mirrors the parts of `ServerProcess` tests use (`url`, `admin_key`, `create_key`),
    plus `get`/`post`/... that go to the app, `governor` and `clock`.
    """

    url = BASE_URL

    def __init__(
        self,
        app: Any,
        transport: SyncASGITransport,
        governor: Governor,
        clock: FakeClock,
        admin_key: str,
        database_url: str,
    ) -> None:
        self.app = app
        self.database_url = database_url
        self.transport = transport  # also for the SDK: ExecutionGovernorClient(url, key, transport=...)
        self.client = httpx.Client(transport=transport, base_url=BASE_URL, timeout=30)
        self.governor = governor
        self.clock = clock
        self.admin_key = admin_key
        self.request = self.client.request
        self.get = self.client.get
        self.post = self.client.post
        self.put = self.client.put
        self.patch = self.client.patch
        self.delete = self.client.delete
        self.options = self.client.options
        self.head = self.client.head

    def create_key(
        self, role: str, *, agent_id: str | None = None, groups: tuple[str, ...] = (), name: str = ""
    ) -> str:
        """A fresh key, created through the admin API."""
        body: dict[str, Any] = {"role": role, "name": name or f"test {role}", "groups": list(groups)}
        if agent_id is not None:
            body["agent_id"] = agent_id
        r = self.post("/v1/keys", json=body, headers={"Authorization": f"Bearer {self.admin_key}"})
        r.raise_for_status()
        return str(r.json()["key"])

    def advance(self, seconds: float) -> None:
        """Move the service's clock, then run the expiry sweep the server's sweeper would run."""
        self.clock.advance(seconds)
        self.governor.expire_due()


def _bootstrap_admin(store: Store) -> str:
    """The first admin key, created the way `faramesh serve` creates it on an empty database."""
    _, secret = service_keys.create_key(store, role=Role.ADMIN, name="first admin", actor="serve")
    return secret


@contextlib.contextmanager
def inprocess_server(
    database_url: str,
    *,
    policy: Path | str | Policy | None = None,
    clock: FakeClock | None = None,
    **settings: Any,
) -> Iterator[InProcessServer]:
    """Start the app in this process on `database_url`; stop it (lifespan shutdown) on exit.

    `settings` are `Settings` fields (approval_timeout=60, rate_limit=None, webhooks=...).
    The governor is built as the app's lifespan builds it, but with the fake clock.
    """
    clock = clock or FakeClock()
    if isinstance(policy, Policy):
        config = Settings(database_url=database_url, **settings)
        active = policy
    else:
        config = Settings(database_url=database_url, policy=str(policy) if policy else None, **settings)
        active = load_policy(config)
    store = Store(database_url)
    try:
        store.upgrade()
        admin_key = _bootstrap_admin(store)
        governor = Governor(
            store,
            active,
            approval_timeout=config.approval_timeout,
            approval_lapse=config.approval_lapse,
            clock=clock,
            telemetry=Telemetry(),
            shadow_policy=load_shadow_policy(config),
            permit_ttl=config.permit_ttl,
            execution_lease=config.execution_lease,
            # A fixed secret, so no secret file is written beside a PostgreSQL test's working directory.
            secret_key=config.secret_key or IN_PROCESS_SECRET,
        )
        app = create_app(config, governor=governor)
        with running_app(app) as loop:
            server = InProcessServer(app, SyncASGITransport(app, loop), governor, clock, admin_key, database_url)
            try:
                yield server
            finally:
                server.client.close()
    finally:
        store.close()


def poll(condition: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Return the first truthy value of `condition()`, polling until `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}

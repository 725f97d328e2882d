"""Application factory: wires settings, storage, policy and the service into FastAPI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from faramesh import __version__, notify, service_reads
from faramesh.config import Settings
from faramesh.errors import ErrorCode
from faramesh.events import start_remote_relay
from faramesh.observability import Telemetry, tracing
from faramesh.observability.logging import ActionLogContext
from faramesh.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from faramesh.policy import Policy, load_starter_policy
from faramesh.server import api, api_docs, errors, grants_api, notify_routes, web
from faramesh.server.guard import GuardedFastAPI
from faramesh.server.hot_path import HotPath
from faramesh.server.http_metrics import HttpMetrics
from faramesh.server.policy_reload import PolicyReloader, load_shadow_policy
from faramesh.server.ratelimit import RateLimiter, parse_rate
from faramesh.server.readiness import WriteProbe
from faramesh.server.security_headers import SECURITY_HEADERS, SecurityHeaders
from faramesh.server.tracing_middleware import TracingMiddleware
from faramesh.service import Governor
from faramesh.storage import Store

log = logging.getLogger("faramesh.server")


def load_policy(settings: Settings) -> Policy:
    """The policy the server starts with: its file, or the starter policy when it has none.

    ``settings.policy_path()`` decides which once, so the CLI's check at start, the app and
    every later reload all use the same source.
    """
    path = settings.policy_path()
    if path is None:
        return load_starter_policy()
    return Policy.from_file(path)


async def _sweeper(governor: Governor, interval: float) -> None:
    """Deny pending actions whose approval window has passed, even if nobody looks, and
    send the reminders and escalations of those that wait too long."""
    while True:
        try:
            await run_in_threadpool(governor.expire_due)
            await run_in_threadpool(governor.send_nudges)  # reminders and escalations due
            nxt = await run_in_threadpool(governor.next_expiry)
        except Exception:  # keep sweeping; a transient database error must not stop expiry
            log.exception("expiry sweep failed")
            nxt = None
        delay = interval
        if nxt is not None:
            delay = max(0.02, min(interval, nxt - governor.clock()))
        await asyncio.sleep(delay)


async def _key_watch(governor: Governor) -> None:
    """Close the streams and waits of keys revoked where no notice reaches this process
    (the CLI on SQLite, a lost notice): one read per interval, only while any is open."""
    while True:
        await asyncio.sleep(governor.hub.key_recheck_interval)
        try:
            await run_in_threadpool(governor.check_revoked_keys)
        except Exception:  # keep watching; a transient database error must not stop it
            log.exception("re-checking the keys of open streams failed")


# Seconds a client is told to wait (Retry-After) before asking a stopping server again:
# about how long a restart takes.
DRAIN_RETRY_AFTER = 1


def begin_drain(app: FastAPI) -> None:
    """The server is stopping (SIGTERM): answer open waits with 503 + Retry-After, end open
    event streams cleanly and refuse new ones, and report not ready; requests that change
    state keep being served until the connections close, and the store is closed (its
    writes drained) by the lifespan afterwards. Call on the event loop's thread."""
    app.state.draining = True
    governor: Governor | None = getattr(app.state, "governor", None)
    if governor is not None:
        woken = governor.hub.drain(DRAIN_RETRY_AFTER)
        log.info("stopping: ended %d open waits and streams", woken)


def create_app(settings: Settings | None = None, *, governor: Governor | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    # A governor handed in may bring its own tracer (embedding, tests); else OTEL_* decides.
    traces = (governor.telemetry.tracing if governor is not None else None) or tracing.setup()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = governor is None
        g = governor
        if g is None:
            store = Store(settings.database_url)
            if settings.migrate:
                await run_in_threadpool(store.upgrade)
            elif not await run_in_threadpool(store.is_current):
                raise RuntimeError("database schema is not current; run `faramesh db upgrade`")
            policy = load_policy(settings)
            g = Governor(
                store,
                policy,
                approval_timeout=settings.approval_timeout,
                approval_lapse=settings.approval_lapse,
                telemetry=Telemetry(),
                shadow_policy=load_shadow_policy(settings),
                permit_ttl=settings.permit_ttl,
                execution_lease=settings.execution_lease,
                secret_key=settings.secret_key,
            )
        # The permit signing key: made on the first start, and usable by this process (its
        # server secret is the one the key was sealed with), or the server does not start.
        await run_in_threadpool(g.signing_keys.ensure)
        app.state.governor = g
        app.state.write_probe = WriteProbe(g.store, g.clock)
        g.telemetry.tracing = g.telemetry.tracing or traces
        g.telemetry.metrics.count_pending_with(lambda: service_reads.pending_count(g))
        # Other replicas on the same PostgreSQL database wake this one's waiters.
        listener = await run_in_threadpool(start_remote_relay, g)

        # The policy file is watched and reloaded on SIGHUP and POST /v1/policy/reload;
        # an invalid file is rejected (PolicyError) and the old policy stays in force.
        reloader = PolicyReloader(g, settings)
        app.state.policy_reloader = reloader
        app.state.reload_policy = reloader.reload
        reloader.start()
        sweeper = asyncio.create_task(_sweeper(g, settings.sweep_interval))
        key_watch = asyncio.create_task(_key_watch(g))
        # Webhooks are delivered by background tasks, never inside a decision.
        notifier = await notify.start(app, g, settings)
        try:
            yield
        finally:
            await reloader.stop()
            for task in (sweeper, key_watch):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await notifier.stop()
            if listener is not None:
                await run_in_threadpool(listener.stop)
            if traces is not None:
                await run_in_threadpool(traces.shutdown)
            if own_store:
                await run_in_threadpool(g.store.close)

    app = GuardedFastAPI(
        title="Faramesh",
        version=__version__,
        description="Execution governor for AI agents: submit actions, get decisions, approve, audit.",
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
        docs_url=None,  # served from local assets by api_docs, not from a CDN
        redoc_url=None,
        # One SERVER span per request: the project's TracingMiddleware makes it, so
        # FastAPI's own request spans (on whenever a tracer provider is set) stay off; its
        # request metrics and logs too (ours are Prometheus's and the log lines): with them
        # on, every request asks OpenTelemetry for its global providers.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.draining = False
    app.guard_headers = SECURITY_HEADERS
    app.max_header_bytes = settings.max_header_bytes
    if traces is None:  # a traced request goes through the tracing middleware instead
        app.wrap_guard = lambda guard: HotPath(
            guard, max_body_size=settings.max_body_bytes, security_headers=SECURITY_HEADERS
        )
    rate = parse_rate(settings.rate_limit)
    app.state.rate_limiter = RateLimiter(rate) if rate is not None else None
    errors.install(app)
    app.include_router(api.router)
    app.include_router(grants_api.router)
    app.include_router(notify_routes.router)
    app.include_router(notify_routes.slack_router)

    app.add_middleware(SecurityHeaders, docs_paths=api_docs.install(app))

    @app.get("/health", tags=["ops"], summary="Liveness")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        g: Governor = request.app.state.governor
        body = await run_in_threadpool(g.telemetry.metrics.render)  # the pending gauge reads the database
        return Response(body, media_type=METRICS_CONTENT_TYPE)

    @app.get("/ready", tags=["ops"], summary="Readiness: the database answers and takes writes")
    async def ready(request: Request) -> JSONResponse:
        g: Governor = request.app.state.governor
        if getattr(request.app.state, "draining", False):
            return errors.error_response(
                503,
                "the server is stopping",
                code="server_draining",
                check="draining",
                headers={"Retry-After": str(DRAIN_RETRY_AFTER)},
            )
        try:
            await run_in_threadpool(g.store.probe_read)
        except Exception as exc:
            return errors.error_response(
                503, f"database unavailable: {type(exc).__name__}", code=ErrorCode.UNAVAILABLE, check="database_read"
            )
        problem = await run_in_threadpool(request.app.state.write_probe.problem)
        if problem is not None:
            return errors.error_response(
                503,
                f"database refuses writes: {problem}",
                code=ErrorCode.UNAVAILABLE,
                check="database_write",
            )
        return JSONResponse({"status": "ready", "policy_hash": g.policy.hash})

    web.install(app, settings)  # the dashboard at /, with its own stricter page CSP
    if settings.log_format == "json":
        app.add_middleware(ActionLogContext)  # log lines of /v1/actions/{id}/… carry the action id
    app.add_middleware(HttpMetrics)  # request counts and latency by route template and status
    if traces is not None:
        app.add_middleware(TracingMiddleware, tracing=traces)  # outermost: spans cover everything

    return app

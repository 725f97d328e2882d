"""Count and time every HTTP request by route template and status (the HTTP side of
observability.metrics), with a plain ASGI middleware: a few microseconds per request."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HttpMetrics:
    """Record each request once its response has ended (or failed) in the app's Metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            governor = getattr(scope["app"].state, "governor", None) if "app" in scope else None
            if governor is not None:
                # The template the router matched (e.g. /v1/actions/{action_id}), never the raw path.
                route = getattr(scope.get("route"), "path", None)
                governor.telemetry.metrics.http_request(
                    scope.get("method", ""), route, status, time.perf_counter() - started
                )

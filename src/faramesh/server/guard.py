"""Checks on a request's head, made before anything reads its body: headers over
the limit, ambiguous body framing, and a declared body over the limit.

FastAPI's own `max_body_size` counts the bytes of streamed (chunked) bodies and
stops reading once they pass the limit; that 413 goes through our error handlers.
A body whose Content-Length is already over the limit is answered by Starlette's
limiter in plain text, outside the app, so this guard sits in front of it and
answers first, in the JSON error shape, without reading a byte of the body.

Headers are bounded by the HTTP parser (h11) while they arrive; headers that came in
one read and so slipped under its check are measured here and refused with 431.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from faramesh.server.errors import error_response


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def framing_problem(scope: Scope) -> str | None:
    """Why the body's framing is ambiguous, or None.

    A request with both Content-Length and Transfer-Encoding (or two lengths) can be
    read one way by a proxy and another way here, which lets a second request hide
    inside the first one's body. Such requests are refused and the connection closed.
    """
    names = [name for name, _ in scope.get("headers", ())]
    lengths = names.count(b"content-length")
    if lengths > 1:
        return "more than one Content-Length header"
    if lengths and b"transfer-encoding" in names:
        return "both Content-Length and Transfer-Encoding; send one"
    return None


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        max_body_size: int | None,
        headers: Mapping[str, str],
        max_header_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_body_size = max_body_size
        self.max_header_bytes = max_header_bytes
        self.headers = dict(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.max_header_bytes is not None:
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))
            if size > self.max_header_bytes:
                response = error_response(
                    431,
                    f"request line and headers are over the limit of {self.max_header_bytes} bytes",
                    field="headers",
                    headers={**self.headers, "Connection": "close"},
                )
                await response(scope, receive, send)
                return
        if scope["type"] == "http":
            problem = framing_problem(scope)
            if problem is not None:
                response = error_response(
                    400,
                    f"ambiguous request body: {problem}",
                    field="headers",
                    headers={**self.headers, "Connection": "close"},
                )
                await response(scope, receive, send)
                return
        if scope["type"] == "http" and self.max_body_size is not None:
            length = declared_length(scope)
            if length is not None and length > self.max_body_size:
                response = error_response(
                    413,
                    f"request body of {length} bytes is over the limit of {self.max_body_size} bytes",
                    field="body",
                    # The body stays unread, so the connection cannot carry another request.
                    headers={**self.headers, "Connection": "close"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class GuardedFastAPI(FastAPI):
    """FastAPI with the request guard outside every other middleware."""

    guard_headers: Mapping[str, str] = {}
    max_header_bytes: int | None = None

    def build_middleware_stack(self) -> ASGIApp:
        return RequestGuard(
            super().build_middleware_stack(), self.max_body_size, self.guard_headers, self.max_header_bytes
        )

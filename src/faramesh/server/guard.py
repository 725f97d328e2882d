"""Checks on a request's head, made before anything reads its body: headers over
the limit, ambiguous body framing, and a declared body over the limit.

FastAPI's own `max_body_size` counts the bytes of streamed (chunked) bodies and
stops reading once they pass the limit; that 413 goes through our error handlers.
A body whose Content-Length is already over the limit is answered by Starlette's
limiter in plain text, outside the app, so this guard sits in front of it and
answers first, in the JSON error shape, without reading a byte of the body.

Headers are bounded by the HTTP parser (h11) while they arrive; headers that came in
one read and so slipped under its check are measured here and refused with 431.

A NUL character (U+0000) in the path, the query string or a header is refused here
with a 422 naming the parameter, for every route (API and dashboard) alike; request
bodies are checked where they are parsed (`jsonbody`, the dashboard's forms).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from faramesh.errors import ErrorCode
from faramesh.server.errors import error_response
from faramesh.validation import NUL, parse_ascii_int


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return parse_ascii_int(value, maximum=None)
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


def nul_field(scope: Scope, routes: Sequence[BaseRoute]) -> str | None:
    """The request parameter (outside the body) that holds a NUL character, or None."""
    path = scope.get("path", "")
    if NUL in path:
        # Each route as FastAPI mounts it (included routers carry their prefix).
        for context in iter_route_contexts(routes):
            match, child = context.route.matches(scope)
            if match is not Match.NONE:  # PARTIAL: the path fits, the method does not
                for name, value in child.get("path_params", {}).items():
                    if isinstance(value, str) and NUL in value:
                        return str(name)
        return "path"
    query = scope.get("query_string") or b""
    if b"%00" in query or b"\x00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if NUL in name or NUL in value:
                return name.replace(NUL, "\\u0000") or "query"
        return "query"
    for name, value in scope.get("headers", ()):
        if b"\x00" in name or b"\x00" in value:
            return str(name.decode("latin-1")).replace(NUL, "\\u0000")
    return None


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        max_body_size: int | None,
        headers: Mapping[str, str],
        max_header_bytes: int | None = None,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        self.app = app
        self.routes = routes
        self.max_body_size = max_body_size
        self.max_header_bytes = max_header_bytes
        self.headers = dict(headers)

    def refusal(self, scope: Scope) -> Response | None:
        """The answer refusing an HTTP request's head, or None when the head is fine.
        The fast routes (hot_path.py) ask the same question before they take a request."""
        if self.max_header_bytes is not None:
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))
            if size > self.max_header_bytes:
                return error_response(
                    431,
                    f"request line and headers are over the limit of {self.max_header_bytes} bytes",
                    field="headers",
                    headers={**self.headers, "Connection": "close"},
                )
        problem = framing_problem(scope)
        if problem is not None:
            return error_response(
                400,
                f"ambiguous request body: {problem}",
                field="headers",
                headers={**self.headers, "Connection": "close"},
            )
        if self.max_body_size is not None:
            length = declared_length(scope)
            if length is not None and length > self.max_body_size:
                return error_response(
                    413,
                    f"request body of {length} bytes is over the limit of {self.max_body_size} bytes",
                    field="body",
                    # The body stays unread, so the connection cannot carry another request.
                    headers={**self.headers, "Connection": "close"},
                )
        field = nul_field(scope, self.routes)
        if field is not None:
            return error_response(
                422,
                f"{field} must not contain the NUL character (\\u0000)",
                code=ErrorCode.INVALID_INPUT,
                field=field,
                headers=self.headers,
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = self.refusal(scope)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class GuardedFastAPI(FastAPI):
    """FastAPI with the request guard outside every other middleware (and the fast routes
    outside it, which ask the guard first)."""

    guard_headers: Mapping[str, str] = {}
    max_header_bytes: int | None = None
    # What the app factory puts in front of the guard (the fast routes, hot_path.py), if anything.
    wrap_guard: Callable[[RequestGuard], ASGIApp] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        guard = RequestGuard(
            super().build_middleware_stack(),
            self.max_body_size,
            self.guard_headers,
            self.max_header_bytes,
            self.router.routes,
        )
        return guard if self.wrap_guard is None else self.wrap_guard(guard)

"""The security headers every response carries, and the one rule for adding them: a
response keeps a header it sets itself and gets the default for each one it does not."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faramesh.server import api_docs

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}

RawHeaders = list[tuple[bytes, bytes]]


def raw_headers(headers: Mapping[str, str]) -> RawHeaders:
    """Headers as ASGI sends them: lower-case names, latin-1 bytes."""
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def with_defaults(headers: Iterable[tuple[bytes, bytes]], defaults: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """`headers`, plus each of `defaults` whose name they do not set (the first default
    of a name wins)."""
    out = list(headers)
    present = {name.lower() for name, _ in out}
    for name, value in defaults:
        if name not in present:
            out.append((name, value))
            present.add(name)
    return out


class SecurityHeaders:
    """Add the security headers to every response that does not set its own.

    A plain ASGI middleware: Starlette's BaseHTTPMiddleware costs a stream and a task
    per request, which showed up in profiles of the submit path.
    """

    def __init__(self, app: ASGIApp, docs_paths: tuple[str | None, ...] = ()) -> None:
        self.app = app
        self.docs_paths = {p for p in docs_paths if p}
        self.defaults = raw_headers(SECURITY_HEADERS)
        self.docs_defaults = [(b"content-security-policy", api_docs.DOCS_CSP.encode("latin-1")), *self.defaults]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        defaults = self.docs_defaults if scope.get("path") in self.docs_paths else self.defaults

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": with_defaults(message.get("headers", ()), defaults)}
            await send(message)

        await self.app(scope, receive, send_with_headers)

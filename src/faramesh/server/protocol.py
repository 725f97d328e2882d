"""HTTP/1.1 on httptools with a bound on each request's line and headers.

httptools, uvicorn's fast parser, buffers a request's head without any limit, so a
client could send megabytes of headers and the server would hold them all. h11 has a
bound but costs more CPU per request. This protocol keeps httptools and counts the
bytes that arrive while a request's head is still incomplete; past the limit it
answers 431 in the JSON error shape and closes the connection. A head that arrives
whole in one read is measured again by the app (`server.guard`), which also answers
431, so the memory one connection can hold for a head is the limit plus one read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import orjson

from faramesh.server.errors import error_body


def _refusal(max_head_bytes: int, headers: Mapping[str, str]) -> bytes:
    body = orjson.dumps(
        error_body(431, f"request line and headers are over the limit of {max_head_bytes} bytes", field="headers")
    )
    lines = [
        b"HTTP/1.1 431 Request Header Fields Too Large",
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
        *(f"{name.lower()}: {value}".encode("latin-1") for name, value in headers.items()),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def bounded_http_protocol(max_head_bytes: int, headers: Mapping[str, str]) -> type[asyncio.Protocol] | str:
    """A uvicorn `http=` protocol class that refuses request heads over the limit;
    "h11" with its own bound when httptools is not installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # uvicorn without its [standard] extra
        return "h11"

    refusal = _refusal(max_head_bytes, headers)

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        _in_head = True
        _head_bytes = 0
        _messages = 0  # completed requests on this connection

        def on_message_begin(self) -> None:
            self._in_head, self._head_bytes = True, 0
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head, self._head_bytes = True, 0
            self._messages += 1

        def data_received(self, data: bytes) -> None:
            messages = self._messages
            super().data_received(data)
            # Count a read only when a head is still incomplete after it and no request
            # ended inside it (such a read is mostly the end of that request's body).
            if not self._in_head or self._messages != messages:
                return
            if self.transport is None or self.transport.is_closing():
                return
            self._head_bytes += len(data)
            if self._head_bytes > max_head_bytes:
                self.transport.write(refusal)
                self.transport.close()

    return BoundedHttpToolsProtocol

"""Helpers for the adversarial suite: the error shape, raw HTTP, and snapshots of
what the server has stored, read straight from its SQLite file."""

from __future__ import annotations

import hashlib
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ServerProcess

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options")


def assert_error(r: httpx.Response, status: int | tuple[int, ...], code: str | None = None) -> dict[str, Any]:
    """The documented error: the status, and {"detail", "error": {"code", "message", "field"}}."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, f"{r.status_code} {r.text[:500]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and set(body) == {"detail", "error"}, body
    assert isinstance(body["detail"], str) and body["detail"], body
    err = body["error"]
    assert err["message"] == body["detail"], body
    assert isinstance(err["code"], str) and err["code"], body
    assert "field" in err, body
    if code is not None:
        assert err["code"] == code, body
    assert_security_headers(r.headers)
    return body


def assert_security_headers(headers: httpx.Headers | dict[str, str]) -> None:
    lower = {k.lower(): v for k, v in headers.items()}
    csp = lower.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, headers
    assert lower.get("x-content-type-options") == "nosniff", headers


def db_path(server: ServerProcess) -> Path:
    assert server.database_url.startswith("sqlite:///")
    path = Path(server.database_url.removeprefix("sqlite:///"))
    return path if path.is_absolute() else (server.cwd or Path.cwd()) / path


@dataclass(frozen=True)
class Snapshot:
    counts: dict[str, int]
    audit_head: tuple[int, str]
    actions_digest: str


def snapshot(server: ServerProcess) -> Snapshot:
    """Row counts, the audit chain head and a digest of every action's state, read
    through a read-only connection so the check cannot change what it checks."""
    uri = f"file:{db_path(server)}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
        counts = {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("actions", "audit_log", "api_keys", "approvals")
        }
        seq, head_hash = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        digest = hashlib.sha256()
        for row in conn.execute("SELECT id, status, version, updated_at, result, error FROM actions ORDER BY seq"):
            digest.update(repr(row).encode())
        for row in conn.execute("SELECT id, revoked_at FROM api_keys ORDER BY id"):
            digest.update(repr(row).encode())
    return Snapshot(counts, (int(seq), str(head_hash)), digest.hexdigest())


@contextmanager
def unchanged(server: ServerProcess) -> Iterator[None]:
    """Assert that nothing the server stores changes inside the block."""
    before = snapshot(server)
    yield
    after = snapshot(server)
    assert after == before, f"stored data changed:\nbefore {before}\nafter  {after}"


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_response(data: bytes) -> RawResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(status, headers, body)


def read_response(sock: socket.socket) -> RawResponse:
    """Read one response (headers plus a Content-Length body) from a socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    resp = parse_response(data)
    length = int(resp.headers.get("content-length", "0"))
    while len(resp.body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        resp.body += chunk
    return resp


def raw_exchange(server: ServerProcess, request: bytes, *, timeout: float = 20.0) -> RawResponse:
    """Send bytes as they are and read the answer: for requests httpx will not send."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_response(sock)

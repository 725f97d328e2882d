"""Limits: request bodies (refused before they are read), headers, per-key rate
limiting with 429 and Retry-After, and the security headers on every page."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from faramesh.server.ratelimit import Rate, RateLimiter, parse_rate, retry_after_header
from tests.adversarial.support import (
    assert_error,
    assert_security_headers,
    raw_exchange,
    read_response,
    unchanged,
)
from tests.conftest import ServerProcess, auth, faramesh_cmd

SMALL_BODY_LIMIT = 4096


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A server with a 4 KiB body limit and an 8 KiB header limit."""
    from tests.conftest import SEED_POLICY

    tmp = tmp_path_factory.mktemp("limits")
    srv = ServerProcess(
        f"sqlite:///{tmp / 'faramesh.db'}",
        SEED_POLICY,
        cwd=tmp,
        extra_args=("--max-body-bytes", str(SMALL_BODY_LIMIT), "--max-header-bytes", "8192", "--rate-limit", "off"),
    )
    srv.start()
    key = srv.create_key("agent")
    yield srv, key
    srv.stop()


def request_head(key: str, extra: str = "", path: str = "/v1/actions") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


# -- request bodies ------------------------------------------------------------------------------------------------


def test_body_limit_is_configurable(small: tuple[ServerProcess, str]) -> None:
    srv, key = small
    pad = "x" * (SMALL_BODY_LIMIT - 200)
    ok = httpx.post(
        srv.url + "/v1/actions",
        json={"tool": "refund", "operation": "process", "params": {"amount": 5, "pad": pad}},
        headers=auth(key),
    )
    assert ok.status_code == 201
    with unchanged(srv):
        big = httpx.post(
            srv.url + "/v1/actions",
            json={"tool": "refund", "operation": "process", "params": {"amount": 5, "pad": pad + "x" * 400}},
            headers=auth(key),
        )
    body = assert_error(big, 413, "too_large")
    assert str(SMALL_BODY_LIMIT) in body["detail"]


def test_default_body_limit_is_one_mebibyte(server: ServerProcess) -> None:
    key = server.create_key("agent")
    just_under = {"tool": "refund", "operation": "process", "params": {"pad": "x" * (1024 * 1024 - 200)}}
    assert httpx.post(server.url + "/v1/actions", json=just_under, headers=auth(key), timeout=30).status_code == 201
    over = {"tool": "refund", "operation": "process", "params": {"pad": "x" * (1024 * 1024)}}
    with unchanged(server):
        r = httpx.post(server.url + "/v1/actions", json=over, headers=auth(key), timeout=30)
    assert "1048576" in assert_error(r, 413, "too_large")["detail"]


@pytest.mark.parametrize("declared", [SMALL_BODY_LIMIT + 1, 50 * 1024 * 1024, 10**15])
def test_declared_length_over_limit_is_refused_before_the_body_is_sent(
    small: tuple[ServerProcess, str], declared: int
) -> None:
    """Only the headers and a first chunk are sent; the 413 arrives anyway, so the
    server did not wait for (or read) the rest."""
    srv, key = small
    with unchanged(srv), socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
        sock.sendall(request_head(key, f"Content-Length: {declared}\r\n") + b'{"tool":"' + b"a" * 1000)
        resp = read_response(sock)
    assert resp.status == 413
    assert resp.headers.get("content-type", "").startswith("application/json")
    assert resp.headers.get("connection") == "close"
    assert_security_headers(resp.headers)
    body = json.loads(resp.body)
    assert body["error"]["code"] == "too_large" and body["detail"] == body["error"]["message"]


def test_chunked_body_growing_past_the_limit_is_cut_off(small: tuple[ServerProcess, str]) -> None:
    """No Content-Length: chunks are sent until the server answers. It answers 413
    once about the limit has arrived, long before the 8 MiB the client has."""
    srv, key = small
    sent = 0
    resp = None
    with unchanged(srv), socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
        sock.sendall(request_head(key, "Transfer-Encoding: chunked\r\n") + b'6\r\n{"a":"\r\n')
        chunk = b"a" * 1024
        for _ in range(8 * 1024):
            try:
                sock.sendall(b"400\r\n" + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
        resp = read_response(sock)
    assert resp.status == 413, resp
    assert json.loads(resp.body)["error"]["code"] == "too_large"
    assert sent < 8 * 1024 * 1024


def test_content_length_shorter_than_the_body_does_not_smuggle_a_request(small: tuple[ServerProcess, str]) -> None:
    srv, key = small
    smuggled = b'{"tool":"refund","operation":"process","params":{"amount":5}}'
    with unchanged(srv):
        resp = raw_exchange(srv, request_head(key, "Content-Length: 5\r\n") + smuggled)
    assert 400 <= resp.status < 500


def smuggling_request(key: str, framing: str) -> bytes:
    """A POST whose body, read by Transfer-Encoding, ends early and leaves a second
    request (an attempt to list the keys) behind it."""
    body = b'{"tool":"refund","operation":"process","params":{"amount":5}}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    hidden = b"GET /v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() + b"\r\n\r\n"
    payload = chunked + hidden
    return request_head(key, framing.format(n=len(payload))) + payload


@pytest.mark.parametrize(
    "framing",
    [
        "Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n",
        "Content-Length: {n}\r\nContent-Length: {n}\r\n",
        "Content-Length: {n}\r\nTransfer-Encoding: gzip, chunked\r\n",
    ],
    ids=["cl-then-te", "te-then-cl", "two-lengths", "cl-and-te-list"],
)
def test_ambiguous_framing_is_refused_and_nothing_is_smuggled(small: tuple[ServerProcess, str], framing: str) -> None:
    srv, key = small
    with unchanged(srv), socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(smuggling_request(key, framing))
        data = b""
        try:
            while True:
                more = sock.recv(65536)
                if not more:
                    break
                data += more
        except (TimeoutError, ConnectionResetError):
            pass
    assert data.count(b"HTTP/1.1 ") == 1, data  # one answer: the hidden request was never read
    status = int(data.split(b" ", 2)[1])
    assert 400 <= status < 500, data
    assert b'"keys"' not in data


# -- headers -------------------------------------------------------------------------------------------------------


def send_headers(srv: ServerProcess, key: str, header_bytes: int) -> Any:
    """Send a GET with one very large header; the answer, or the error if the server
    closed the connection while we were still sending (which is also a refusal)."""
    request = (
        b"GET /v1/actions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + key.encode()
        + b"\r\nX-Big: "
        + b"a" * header_bytes
        + b"\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
        try:
            sock.sendall(request)
            return read_response(sock)
        except (BrokenPipeError, ConnectionResetError) as exc:
            return exc


@pytest.mark.parametrize("size", [16 * 1024, 100 * 1024, 1024 * 1024, 8 * 1024 * 1024])
def test_oversized_headers_are_refused_with_a_4xx(small: tuple[ServerProcess, str], size: int) -> None:
    srv, key = small
    with unchanged(srv):
        out = send_headers(srv, key, size)
    if isinstance(out, Exception):
        return  # the server hung up on a request it would not read: refused, no hang
    assert out.status == 431, out
    assert out.headers.get("connection") == "close"
    assert json.loads(out.body)["error"]["code"] == "headers_too_large"
    assert_security_headers(out.headers)
    # The server is still serving.
    assert httpx.get(srv.url + "/health").status_code == 200


def test_headers_over_the_limit_in_one_read_get_a_json_431(small: tuple[ServerProcess, str]) -> None:
    """Headers that arrive whole in one read are measured by the app, which answers
    431 in the JSON shape too."""
    srv, key = small
    with unchanged(srv):
        r = httpx.get(srv.url + "/v1/actions", headers=auth(key) | {"X-Big": "a" * 12_000})
    assert_error(r, 431, "headers_too_large")
    ok = httpx.get(srv.url + "/v1/actions", headers=auth(key) | {"X-Big": "a" * 4000})
    assert ok.status_code == 200


def test_many_small_headers_are_bounded_too(small: tuple[ServerProcess, str]) -> None:
    srv, key = small
    headers = auth(key) | {f"X-H{i}": "v" * 20 for i in range(1000)}
    with unchanged(srv):
        r = httpx.get(srv.url + "/v1/actions", headers=headers)
    assert r.status_code in (400, 431)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello on the plain port
        b"FOO /v1/actions HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/actions HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
        b"GET /v1/actions HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET /v1/actions HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /v1/ actions HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/actions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST /v1/actions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/actions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=[
        "tls-hello",
        "unknown-method",
        "space-in-header-name",
        "nul-in-header",
        "http-9",
        "space-in-target",
        "negative-length",
        "text-length",
        "bad-chunk-size",
    ],
)
def test_unparseable_requests_get_a_400(small: tuple[ServerProcess, str], raw: bytes) -> None:
    """Requests the HTTP parser cannot read are answered 400 before the app sees them
    (in plain text: documented in docs/security.md), or the connection is dropped."""
    srv, _ = small
    with unchanged(srv):
        try:
            resp = raw_exchange(srv, raw, timeout=10)
        except ConnectionResetError:
            return
    assert 400 <= resp.status < 500, resp


# -- rate limiting --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    from tests.conftest import SEED_POLICY

    tmp = tmp_path_factory.mktemp("ratelimit")
    srv = ServerProcess(f"sqlite:///{tmp / 'faramesh.db'}", SEED_POLICY, cwd=tmp, extra_args=("--rate-limit", "5/s"))
    srv.start()
    yield srv
    srv.stop()


def burst(
    srv: ServerProcess, key: str, n: int, call: Callable[[httpx.Client, str], httpx.Response]
) -> list[httpx.Response]:
    with httpx.Client(base_url=srv.url, headers=auth(key), timeout=30) as client:
        return [call(client, key) for _ in range(n)]


def submit_call(client: httpx.Client, key: str) -> httpx.Response:
    return client.post("/v1/actions", json={"tool": "refund", "operation": "process", "params": {"amount": 5}})


def test_rate_limit_answers_429_with_retry_after(limited: ServerProcess) -> None:
    key = limited.create_key("agent")
    time.sleep(1.1)  # the key's bucket is full
    responses = burst(limited, key, 30, lambda c, k: c.get("/v1/actions"))
    codes = [r.status_code for r in responses]
    assert codes.count(200) >= 5 and 429 in codes, codes
    limited_r = next(r for r in responses if r.status_code == 429)
    body = assert_error(limited_r, 429, "rate_limited")
    retry = limited_r.headers["retry-after"]
    assert retry.isdigit() and int(retry) >= 1
    assert body["error"]["retry_after"] == int(retry)
    # After waiting as told, the key works again.
    time.sleep(int(retry))
    with httpx.Client(base_url=limited.url, headers=auth(key)) as client:
        assert client.get("/v1/actions").status_code == 200


def test_rate_limit_is_per_key(limited: ServerProcess) -> None:
    noisy, quiet = limited.create_key("agent"), limited.create_key("agent")
    time.sleep(1.1)
    codes = [r.status_code for r in burst(limited, noisy, 30, lambda c, k: c.get("/v1/actions"))]
    assert 429 in codes
    with httpx.Client(base_url=limited.url, headers=auth(quiet)) as client:
        assert [client.get("/v1/actions").status_code for _ in range(3)] == [200, 200, 200]


def test_unauthenticated_floods_get_401_not_429(limited: ServerProcess) -> None:
    """Requests without a valid key are refused before the limiter: no per-key state
    is made for them, and they never see 429."""
    with httpx.Client(base_url=limited.url, timeout=30) as client:
        codes = {client.get("/v1/actions", headers=auth(f"fm_bogus{i}")).status_code for i in range(40)}
        codes |= {client.get("/v1/actions").status_code for _ in range(20)}
    assert codes == {401}


def test_rate_limit_from_the_environment(start_server: Callable[..., ServerProcess]) -> None:
    """FARAMESH_RATE_LIMIT=3/m: three submissions, then 429s that record nothing."""
    srv = start_server(env={"FARAMESH_RATE_LIMIT": "3/m"})
    key = srv.create_key("agent")
    with httpx.Client(base_url=srv.url, headers=auth(key), timeout=30) as client:
        assert [submit_call(client, key).status_code for _ in range(3)] == [201, 201, 201]
        with unchanged(srv):
            refused = [submit_call(client, key) for _ in range(3)]
    for r in refused:
        assert_error(r, 429, "rate_limited")
        assert 1 <= int(r.headers["retry-after"]) <= 20  # one token per 20 seconds


def test_invalid_rate_limit_is_refused_at_start() -> None:
    import subprocess

    out = subprocess.run(
        faramesh_cmd("serve", "--rate-limit", "lots", "--port", "1"), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "rate limit" in out.stderr.lower()


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("50/s", Rate(50, 1)),
        ("600/m", Rate(600, 60)),
        ("10000/h", Rate(10000, 3600)),
        (" 2.5 / second ", Rate(2.5, 1)),
        ("100/minute", Rate(100, 60)),
        ("off", None),
        ("0", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_rate(text: str | None, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "50", "50/fortnight", "-5/s", "/s", "5/s/s", "1e3/s"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate(text)


def test_limiter_burst_then_refuses_with_time_to_wait() -> None:
    limiter = RateLimiter(Rate(3, 60))
    assert [limiter.check("k") for _ in range(3)] == [None, None, None]
    wait = limiter.check("k")
    assert wait is not None and 0 < wait <= 20
    assert retry_after_header(wait) == str(int(-(-wait // 1)))
    assert limiter.check("other") is None
    assert retry_after_header(0.01) == "1"


# -- security headers ----------------------------------------------------------------------------------------------


def every_route(server: ServerProcess) -> list[tuple[str, str]]:
    spec = httpx.get(server.url + "/openapi.json").json()
    out = []
    for path, ops in spec["paths"].items():
        for method in ops:
            out.append((method.upper(), path))
    return out


def test_security_headers_on_every_page(server: ServerProcess) -> None:
    admin = server.admin_key or ""
    agent = server.create_key("agent")
    pending = httpx.post(
        server.url + "/v1/actions",
        json={"tool": "refund", "operation": "process", "params": {"amount": 500}},
        headers=auth(agent),
    ).json()["id"]
    routes = every_route(server)
    assert len(routes) >= 15
    checked = 0
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for method, path in routes:
            url = path.replace("{action_id}", pending).replace("{key_id}", "ffffffffffffffff")
            if path == "/v1/events":
                with client.stream("GET", url, headers=auth(admin)) as r:
                    assert_security_headers(r.headers)
                checked += 1
                continue
            if path.endswith("/wait"):
                url += "?timeout=0"
            if method in ("POST", "DELETE") and path.startswith("/v1/keys"):
                who = agent  # refused (403): the check is on the headers, not the effect
            elif method == "POST" and path in ("/v1/actions", "/v1/decide", "/v1/gate/decide"):
                who = agent
            else:
                who = admin
            r = client.request(method, url, headers=auth(who), json={} if method == "POST" else None)
            assert r.status_code < 500, (method, path, r.text)
            assert_security_headers(r.headers)
            checked += 1
        # Pages outside the API, and the error pages.
        for path in ("/", "/health", "/ready", "/openapi.json", "/docs", "/redoc", "/metrics", "/no/such/page"):
            r = client.get(path)
            assert_security_headers(r.headers)
            checked += 1
        for r in (
            client.put("/v1/actions"),
            client.get("/v1/actions"),
            client.post("/v1/actions", content=b"{", headers=auth(agent) | {"Content-Type": "application/json"}),
        ):
            assert_security_headers(r.headers)
            checked += 1
    assert checked >= len(routes) + 10
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_security_doc_lists_the_real_limits() -> None:
    """docs/security.md's settings table names each limit's option, variable and
    default as the code has them."""
    from pathlib import Path

    from faramesh.cli.serve import serve
    from faramesh.config import SETTINGS, Settings

    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    options = {p.name: p for p in serve.params}
    for name in ("max_body_bytes", "max_header_bytes", "rate_limit"):
        setting = next(s for s in SETTINGS if s.name == name)
        row = next(line for line in doc.splitlines() if f"`{setting.env}`" in line)
        assert f"`--{name.replace('_', '-')}`" in row, row
        assert str(setting.default) in row, row
        assert options[name].default == setting.default == getattr(Settings(), name)


def test_docs_pages_load_only_local_assets_and_cannot_be_framed(server: ServerProcess) -> None:
    """Swagger UI and ReDoc load their scripts from this server only; every other page
    keeps `default-src 'none'`, and none may be framed."""
    for path in ("/docs", "/redoc"):
        csp = httpx.get(server.url + path).headers["content-security-policy"]
        assert "script-src 'self' 'unsafe-inline';" in csp
        assert "http" not in csp  # no other origin
        assert "frame-ancestors 'none'" in csp
    assert httpx.get(server.url + "/openapi.json").headers["content-security-policy"] == (
        "default-src 'none'; frame-ancestors 'none'"
    )


def test_sdk_raises_rate_limit_error_with_retry_after(limited: ServerProcess) -> None:
    """The SDK turns 429 into RateLimitError carrying Retry-After; it never reports
    the refused submission as an action."""
    from faramesh.sdk import RateLimitError
    from faramesh.sdk.client import ExecutionGovernorClient, _seconds

    client = ExecutionGovernorClient(base_url=limited.url, api_key=limited.create_key("agent"), timeout=10)
    time.sleep(1.1)
    with pytest.raises(RateLimitError) as caught:
        for _ in range(200):
            action = client.submit_action(tool="refund", operation="process", params={"amount": 5}, context={})
            assert action["status"] == "allowed"
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1
    assert [_seconds(v) for v in ("2", "0.5", None, "", "\u00b2", "nan", "inf", "Wed, 21 Oct 2026 07:28:00 GMT")] == [
        2.0,
        0.5,
        None,
        None,
        None,
        None,
        None,
        None,
    ]

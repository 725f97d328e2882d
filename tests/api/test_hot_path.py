"""The fast routes (server/hot_path.py) and the full FastAPI routes must be
indistinguishable to a client: same status, same body shape, same error code and field,
same headers. Each request here is sent twice, once as the server takes it and once with
the fast path switched off, and the answers are compared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest

from faramesh.server import hot_path
from faramesh.server.errors import unexpected_error_response
from faramesh.server.guard import RequestGuard
from tests.conftest import auth
from tests.inprocess import InProcessServer

BODY = {"tool": "refund", "operation": "process", "params": {"amount": 50}, "context": {"agent_id": "bot"}}
VOLATILE = {"id", "created_at", "updated_at", "permit", "permit_expires_at", "request_hash", "approval_token"}
# Headers that differ between any two answers, whichever path gave them.
VOLATILE_HEADERS = {"content-length", "date", "server"}
ROUTES = ["/v1/actions", "/v1/decide", "/v1/gate/decide"]


@pytest.fixture
def app(make_client: Callable[..., InProcessServer]) -> Iterator[InProcessServer]:
    yield make_client(rate_limit=None)


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, per request to a fast route, whether the fast path answered it."""
    seen: list[bool] = []
    original = hot_path.HotPath._ordinary

    def spy(self: hot_path.HotPath, scope: Any, body: bytes, takes_key: bool) -> Any:
        found = original(self, scope, body, takes_key)
        seen.append(found is not None)
        return found

    monkeypatch.setattr(hot_path.HotPath, "_ordinary", spy)
    return seen


def _shape(response: httpx.Response) -> tuple[int, Any, Any]:
    body = response.json()
    headers = sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE_HEADERS)
    if "detail" in body:  # the error shape
        return response.status_code, {"code": body["error"]["code"], "field": body["error"]["field"]}, headers
    return response.status_code, {k: v for k, v in body.items() if k not in VOLATILE}, headers


def _both(app: InProcessServer, monkeypatch: pytest.MonkeyPatch, path: str = "/v1/actions", **request: Any) -> Any:
    fast = app.post(path, **request)
    with monkeypatch.context() as off:
        off.setattr(hot_path.HotPath, "_ordinary", lambda self, scope, body, takes_key: None)
        full = app.post(path, **request)
    return _shape(fast), _shape(full)


@pytest.mark.parametrize("path", ROUTES)
def test_an_ordinary_request_takes_the_fast_path_with_the_routes_answer_and_headers(
    app: InProcessServer, taken: list[bool], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    key = app.create_key("agent")
    fast, full = _both(app, monkeypatch, path, json=BODY, headers=auth(key))
    assert taken == [True]
    assert fast == full
    assert fast[0] == (201 if path == "/v1/actions" else 200)
    headers = dict(fast[2])
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize("path", ["/v1/decide", "/v1/gate/decide"])
def test_a_dry_run_on_the_fast_path_judges_as_the_route_does(
    app: InProcessServer, taken: list[bool], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    key = app.create_key("agent")
    decisions = []
    for body in (BODY, BODY | {"params": {"amount": 5000}}, {"tool": "user_management", "operation": "delete"}):
        fast = app.post(path, json=body, headers=auth(key))
        with monkeypatch.context() as off:
            off.setattr(hot_path.HotPath, "_ordinary", lambda self, scope, body, takes_key: None)
            full = app.post(path, json=body, headers=auth(key))
        assert fast.status_code == full.status_code == 200
        assert fast.json() == full.json()  # request_hash included: the same hash of the same call
        decisions.append(fast.json()["decision"])
    assert taken == [True, True, True]
    assert decisions == ["allow", "require_approval", "deny"]
    assert app.get("/v1/actions", headers=auth(app.admin_key)).json()["actions"] == []  # nothing recorded


def test_held_and_repeated_submits_on_the_fast_path(
    app: InProcessServer, taken: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = app.create_key("agent")
    held = BODY | {"params": {"amount": 5000}}
    fast, full = _both(app, monkeypatch, json=held, headers=auth(key) | {"Idempotency-Key": "k-1"})
    assert fast == full and fast[0] == 201 and fast[1]["status"] == "pending_approval"
    first = app.post("/v1/actions", json=held, headers=auth(key) | {"Idempotency-Key": "k-2"})
    again = app.post("/v1/actions", json=held, headers=auth(key) | {"Idempotency-Key": "k-2"})
    assert again.json()["id"] == first.json()["id"]
    assert taken == [True] * 3


@pytest.mark.parametrize(
    ("case", "request_kw", "fast_path"),
    [
        ("no key", {"json": BODY}, False),
        ("wrong key", {"json": BODY, "headers": {"Authorization": "Bearer fm_nope"}}, True),
        ("not JSON", {"content": b"{tool", "headers": {"Content-Type": "application/json"}}, False),
        ("form body", {"content": b"tool=x", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, False),
        ("a list", {"json": [BODY]}, False),
        ("missing tool", {"json": {"operation": "x"}}, False),
        ("repeated key", {"content": b'{"tool":"a","tool":"b","operation":"x"}'}, False),
        ("inexact number", {"content": b'{"tool":"a","operation":"x","params":{"n":100.000000000000001}}'}, False),
        ("NUL in params", {"content": b'{"tool":"a","operation":"x","params":{"n":"a\\u0000"}}'}, False),
        ("bad tool name", {"json": BODY | {"tool": "no spaces allowed"}}, True),
        ("long Idempotency-Key", {"json": BODY, "headers": {"Idempotency-Key": "x" * 201}}, True),
    ],
)
@pytest.mark.parametrize("path", ROUTES)
def test_refusals_are_the_routes_own_answers(
    app: InProcessServer,
    taken: list[bool],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    request_kw: dict[str, Any],
    fast_path: bool,
    path: str,
) -> None:
    key = app.create_key("agent")
    request_kw = dict(request_kw)
    headers = {"Content-Type": "application/json"} | auth(key) | request_kw.pop("headers", {})
    if case == "no key":
        headers.pop("Authorization")
    fast, full = _both(app, monkeypatch, path, headers=headers, **request_kw)
    assert fast == full, case
    if case == "long Idempotency-Key" and path != "/v1/actions":
        assert fast[0] == 200  # a dry run takes no Idempotency-Key: the header is not read
    else:
        assert 400 <= fast[0] < 500, (case, fast)
    assert taken == [fast_path], case


@pytest.mark.parametrize(
    ("case", "target", "headers", "status", "field"),
    [
        ("NUL in the query", "?x=%00", {}, 422, "x"),
        ("headers over the limit", "", {"X-Filler": "y" * 20_000}, 431, "headers"),
        ("declared body over the limit", "", {"Content-Length": "99999999"}, 413, "body"),
        ("two lengths", "", {"Transfer-Encoding": "chunked"}, 400, "headers"),
    ],
)
@pytest.mark.parametrize("path", ROUTES)
def test_what_the_guard_refuses_never_reaches_the_fast_path(
    make_client: Callable[..., InProcessServer],
    taken: list[bool],
    case: str,
    target: str,
    headers: dict[str, str],
    status: int,
    field: str,
    path: str,
) -> None:
    app = make_client(rate_limit=None, max_header_bytes=8192)
    content = orjson.dumps(BODY)
    r = app.post(
        path + target, content=content, headers=auth(app.admin_key) | {"Content-Type": "application/json"} | headers
    )
    assert (r.status_code, r.json()["error"]["field"]) == (status, field), case
    assert r.headers["x-content-type-options"] == "nosniff"
    assert taken == []


@pytest.mark.parametrize("path", ROUTES)
def test_an_unexpected_failure_on_the_fast_path_is_the_documented_500(
    app: InProcessServer, taken: list[bool], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The full route's answer comes from the same `unexpected_error_response` (the
    in-process client re-raises the route's exception, so it is not compared here)."""
    key = app.create_key("agent")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.governor, "evaluate", broken)
    r = app.post(path, json=BODY, headers=auth(key))
    assert taken == [True]
    assert r.status_code == 500
    assert r.json() == orjson.loads(unexpected_error_response("POST", RuntimeError("boom"), {}).body)
    error = r.json()["error"]
    assert (error["code"], error["outcome"]) == ("internal", "unknown")  # a POST: never "not applied"
    assert r.headers["x-frame-options"] == "DENY" and r.headers["content-type"] == "application/json"
    assert app.get("/v1/actions", headers=auth(app.admin_key)).json()["actions"] == []


def test_the_fast_path_counts_requests_in_the_http_metrics(app: InProcessServer, taken: list[bool]) -> None:
    key = app.create_key("agent")
    for path in ROUTES:
        app.post(path, json=BODY, headers=auth(key))
    app.post("/v1/decide", json=BODY, headers=auth("fm_wrong"))
    assert taken == [True] * 4
    text = app.get("/metrics").text
    for path, status, count in (
        ("/v1/actions", 201, 1),
        ("/v1/decide", 200, 1),
        ("/v1/gate/decide", 200, 1),
        ("/v1/decide", 401, 1),
    ):
        line = f'faramesh_http_requests_total{{method="POST",route="{path}",status="{status}"}} {count}.0'
        assert line in text, line


def test_a_body_over_the_limit_is_handed_on_unjudged_with_every_byte() -> None:
    """A body that arrives in chunks past the limit (no Content-Length): reading stops
    there, and the route gets the chunks already read, then the rest from the client."""
    big = orjson.dumps(BODY | {"params": {"note": "x" * 2048}})
    parts = [big[i : i + 100] for i in range(0, len(big), 100)]
    incoming = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    received: list[bytes] = []

    async def route(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message["body"])
            if not message["more_body"]:
                return

    async def client() -> Any:
        return incoming.pop(0)

    fast = hot_path.HotPath(RequestGuard(route, 512, {}), max_body_size=512, security_headers={})
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/actions",
        "headers": [(b"content-type", b"application/json")],
        "app": SimpleNamespace(state=SimpleNamespace(governor=object())),
    }
    judged: list[Any] = []
    fast._ordinary = lambda scope, body, takes_key: judged.append(body)  # type: ignore[method-assign,assignment,return-value]
    asyncio.run(fast(scope, client, lambda message: asyncio.sleep(0)))
    assert b"".join(received) == big
    assert judged == []


def test_the_rate_limit_answers_the_same_on_the_fast_path(make_client: Callable[..., InProcessServer]) -> None:
    app = make_client(rate_limit="2/minute")
    key = app.create_key("agent")
    statuses = [app.post("/v1/actions", json=BODY, headers=auth(key)).status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
    limited = app.post("/v1/actions", json=BODY, headers=auth(key))
    assert limited.headers["Retry-After"].isdigit() and limited.json()["error"]["code"] == "rate_limited"


def test_a_key_revoked_after_it_was_remembered_answers_401_on_both_paths(
    app: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = app.post("/v1/keys", json={"role": "agent"}, headers=auth(app.admin_key)).json()
    other, key_id = made["key"], made["id"]
    assert app.post("/v1/actions", json=BODY, headers=auth(other)).status_code == 201  # remembered now
    assert app.delete(f"/v1/keys/{key_id}", headers=auth(app.admin_key)).status_code == 200
    fast, full = _both(app, monkeypatch, json=BODY, headers=auth(other))
    assert fast == full and fast[0] == 401

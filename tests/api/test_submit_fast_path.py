"""POST /v1/actions answered by the fast path (server/submit_route.py) and by the full
FastAPI route must be indistinguishable to a client: same status, same body shape, same
error code and field. Each request here is sent twice, once as the server takes it and
once with the fast path switched off, and the answers are compared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from faramesh.server import submit_route
from tests.conftest import auth
from tests.inprocess import InProcessServer

BODY = {"tool": "refund", "operation": "process", "params": {"amount": 50}, "context": {"agent_id": "bot"}}
VOLATILE = {"id", "created_at", "updated_at", "permit", "permit_expires_at", "request_hash", "approval_token"}


@pytest.fixture
def app(make_client: Callable[..., InProcessServer]) -> Iterator[InProcessServer]:
    yield make_client(rate_limit=None)


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, per POST /v1/actions, whether the fast path answered it."""
    seen: list[bool] = []
    original = submit_route.FastSubmit._ordinary

    def spy(self: submit_route.FastSubmit, scope: Any, body: bytes) -> Any:
        found = original(self, scope, body)
        seen.append(found is not None)
        return found

    monkeypatch.setattr(submit_route.FastSubmit, "_ordinary", spy)
    return seen


def _shape(response: httpx.Response) -> tuple[int, Any]:
    body = response.json()
    if "detail" in body:  # the error shape
        return response.status_code, {"code": body["error"]["code"], "field": body["error"]["field"]}
    return response.status_code, {k: v for k, v in body.items() if k not in VOLATILE}


def _both(app: InProcessServer, monkeypatch: pytest.MonkeyPatch, **request: Any) -> tuple[Any, Any]:
    fast = app.post("/v1/actions", **request)
    with monkeypatch.context() as off:
        off.setattr(submit_route.FastSubmit, "_ordinary", lambda self, scope, body: None)
        full = app.post("/v1/actions", **request)
    return _shape(fast), _shape(full)


def test_an_ordinary_submit_takes_the_fast_path_and_answers_as_the_route_does(
    app: InProcessServer, taken: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = app.create_key("agent")
    fast, full = _both(app, monkeypatch, json=BODY, headers=auth(key))
    assert taken == [True]
    assert fast == full and fast[0] == 201
    # Held, and repeated under one Idempotency-Key (200 with the same action).
    held = BODY | {"params": {"amount": 5000}}
    fast, full = _both(app, monkeypatch, json=held, headers=auth(key) | {"Idempotency-Key": "k-1"})
    assert fast[0] == 201 and fast[1]["status"] == "pending_approval"
    first = app.post("/v1/actions", json=held, headers=auth(key) | {"Idempotency-Key": "k-2"})
    again = app.post("/v1/actions", json=held, headers=auth(key) | {"Idempotency-Key": "k-2"})
    assert again.json()["id"] == first.json()["id"]
    assert taken == [True] * 4


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
def test_refusals_are_the_routes_own_answers(
    app: InProcessServer,
    taken: list[bool],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    request_kw: dict[str, Any],
    fast_path: bool,
) -> None:
    key = app.create_key("agent")
    request_kw = dict(request_kw)
    headers = {"Content-Type": "application/json"} | auth(key) | request_kw.pop("headers", {})
    if case == "no key":
        headers.pop("Authorization")
    fast, full = _both(app, monkeypatch, headers=headers, **request_kw)
    assert fast == full, case
    assert 400 <= fast[0] < 500, (case, fast)
    assert taken == [fast_path], case


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

    fast = submit_route.FastSubmit(route, routes=[], max_body_size=512)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/actions",
        "headers": [(b"content-type", b"application/json")],
    }
    judged: list[Any] = []
    fast._ordinary = lambda scope, body: judged.append(body)  # type: ignore[method-assign,assignment,return-value]
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

"""Hostile values at the edge, on SQLite and PostgreSQL alike.

- NUL (U+0000) in every path parameter, query parameter, header parameter and string
  body field of every route (found from the app itself, so new routes are covered):
  always a 4xx naming the field, never a 5xx, and nothing stored.
- Rate-limit and budget keys of any length: bucketed by a digest, never a 5xx.
- Numbers written with other digits ("²"): one strict parser, never a 5xx.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import func, select

from faramesh import keys
from faramesh.config import Settings
from faramesh.errors import InvalidInput
from faramesh.server.app import create_app
from faramesh.server.web.guard import WebRoute
from faramesh.service import Governor
from faramesh.service import keys as service_keys
from faramesh.storage.schema import actions, api_keys, audit_log, limit_usage
from tests.adversarial.support import assert_error
from tests.conftest import fresh_database

pytestmark = pytest.mark.backends("sqlite", "postgresql")

POLICY = """\
rules:
  - id: big-refund
    match: {tool: refund, operation: process, amount_gt: 100}
    require_approval: true
  - id: search
    match: {tool: search, operation: run}
    allow: true
    rate_limit: {max: 1, per: 1h, key: params.query}
  - id: spend
    match: {tool: pay, operation: send}
    allow: true
    budget: {sum: amount, max: 100, per: 1d, key: params.account}
"""
NUL = "a\x00b"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Edge:
    client: TestClient
    g: Governor
    admin: str
    agent: str
    pending: str  # a pending action's id

    def h(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def stored(self) -> tuple[int, int, int, int]:
        def count(conn: Any) -> tuple[int, int, int, int]:
            return tuple(  # type: ignore[return-value]
                int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in (actions, audit_log, api_keys, limit_usage)
            )

        return self.g.store.read(count)


@pytest.fixture(scope="module")
def edge(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    tmp = tmp_path_factory.mktemp("edge")
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    with fresh_database(backend, tmp) as url:
        app = create_app(Settings(database_url=url, policy=str(policy), rate_limit="off", secret_key="k" * 32))
        with TestClient(app, raise_server_exceptions=False) as client:
            g: Governor = app.state.governor
            _, admin = service_keys.create_key(g.store, role="admin", name="admin")
            _, agent = service_keys.create_key(g.store, role="agent", name="agent")
            r = client.post(
                "/v1/actions",
                json={"tool": "refund", "operation": "process", "params": {"amount": 500}},
                headers={"Authorization": f"Bearer {agent}"},
            )
            assert r.status_code == 201, r.text
            yield Edge(client, g, admin, agent, r.json()["id"])


# -- the route walker ------------------------------------------------------------------------------------------------


def _routes(edge: Edge) -> list[APIRoute]:
    """Every route as mounted (included routers carry their prefix)."""
    contexts = iter_route_contexts(edge.client.app.routes)  # type: ignore[attr-defined]
    found = [c.route for c in contexts if isinstance(c.route, APIRoute)]
    assert len(found) > 30, found  # the API, webhooks, Slack and the dashboard
    assert any(isinstance(r, WebRoute) for r in found)
    return found


def _nul_bodies(model: type[BaseModel]) -> list[tuple[dict[str, Any], str]]:
    """(body, field that must be named) for each field of a body model: NUL as the value,
    and inside it when it holds an object or a list."""
    out: list[tuple[dict[str, Any], str]] = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        ann = info.annotation
        origins = {get_origin(t) for t in (ann, *get_args(ann))}
        out.append(({key: NUL}, key))
        if dict in origins or ann is Any:
            out.append(({key: {"k": NUL}}, f"{key}.k"))
        if list in origins or ann is Any:
            out.append(({key: ["ok", NUL]}, f"{key}[1]"))
    return out


def _url(route: APIRoute, edge: Edge, override: dict[str, str] | None = None) -> str:
    path = route.path_format
    for param in route.dependant.path_params:
        value = (override or {}).get(param.name, edge.pending)
        path = path.replace("{" + param.name + "}", value)
    return path


def _assert_refused(r: Any, field: str, where: str) -> None:
    assert r.status_code < 500, (where, r.status_code, r.text[:300])
    assert 400 <= r.status_code < 500, (where, r.status_code, r.text[:300])
    if r.headers.get("content-type", "").startswith("application/json"):
        body = assert_error(r, r.status_code)
        if r.status_code == 422:
            assert body["error"]["field"] == field, (where, body)
            assert "NUL" in body["detail"], (where, body)


def test_nul_in_every_path_query_header_and_body_field_is_a_4xx_naming_the_field(edge: Edge) -> None:
    before = edge.stored()
    checked = 0
    for route in _routes(edge):
        for method in sorted(route.methods - {"HEAD"}):
            where = f"{method} {route.path}"
            for param in route.dependant.path_params:
                url = _url(route, edge, {param.name: "a%00b"})
                r = edge.client.request(method, url, headers=edge.h(edge.admin), json={})
                _assert_refused(r, param.name, f"{where} path {param.name}")
                assert r.status_code == 422, (where, r.text)
                checked += 1
            for param in route.dependant.query_params:
                name = param.alias or param.name
                r = edge.client.request(method, _url(route, edge) + f"?{name}=a%00b", headers=edge.h(edge.admin))
                _assert_refused(r, name, f"{where} query {name}")
                assert r.status_code == 422, (where, r.text)
                checked += 1
            for param in route.dependant.header_params:
                name = (param.alias or param.name).lower()
                headers = edge.h(edge.admin) | {name: NUL}
                r = edge.client.request(method, _url(route, edge), headers=headers, json={})
                _assert_refused(r, name, f"{where} header {name}")
                assert r.status_code == 422, (where, r.text)
                checked += 1
            for body_param in route.dependant.body_params:
                model = body_param.field_info.annotation
                models = [t for t in (model, *get_args(model)) if isinstance(t, type) and issubclass(t, BaseModel)]
                for m in models:
                    for body, field in _nul_bodies(m):
                        r = edge.client.request(method, _url(route, edge), headers=edge.h(edge.admin), json=body)
                        _assert_refused(r, field, f"{where} body {field}")
                        assert r.status_code == 422, (where, body, r.text)
                        checked += 1
            # Every route, whatever it declares: a NUL in the query, a header and a JSON body.
            for kwargs, field in (
                ({"params": {"x": NUL}}, "x"),
                ({"headers": {"x-probe": NUL}}, "x-probe"),
                ({"json": {"reason": NUL, "params": {"note": NUL}}}, None),
            ):
                if method == "GET" and "json" in kwargs:
                    continue  # a GET's body is never read (and /events would stream forever)
                headers = edge.h(edge.admin) | kwargs.pop("headers", {})  # type: ignore[operator]
                r = edge.client.request(method, _url(route, edge), headers=headers, **kwargs)  # type: ignore[arg-type]
                assert r.status_code < 500, (where, kwargs, r.status_code, r.text[:300])
                if field is not None:
                    _assert_refused(r, field, f"{where} {field}")
                    assert r.status_code == 422, (where, r.text)
                checked += 1
    assert checked > 150, checked
    after = edge.stored()
    assert after == before, "a refused request stored something"


def test_nul_in_the_api_bodies_named_in_reports(edge: Edge) -> None:
    """The places reported to fail on PostgreSQL, one by one, with the JSON path named."""
    h = edge.h(edge.admin)
    cases = [
        ("POST", f"/v1/actions/{edge.pending}/deny", {"reason": NUL}, "reason"),
        ("POST", f"/v1/actions/{edge.pending}/approve", {"reason": NUL}, "reason"),
        ("POST", f"/v1/actions/{edge.pending}/approve", {"params": {"amount": 5, "to": NUL}}, "params.to"),
        ("POST", f"/v1/actions/{edge.pending}/result", {"success": False, "error": NUL}, "error"),
        ("POST", "/v1/keys", {"role": "agent", "name": NUL}, "name"),
        ("POST", "/v1/keys", {"role": "approver", "groups": ["ok", NUL]}, "groups[1]"),
        ("POST", "/v1/webhooks", {"url": "https://example.com/a\x00", "format": "json"}, "url"),
        ("POST", "/v1/webhooks", {"url": "https://example.com/", "description": NUL}, "description"),
        ("POST", "/v1/actions", {"tool": "refund", "operation": "process", "params": {NUL: 1}}, "params"),
        ("POST", "/v1/actions", {"tool": "refund", "operation": "process", "context": {"k": [NUL]}}, "context.k[0]"),
    ]
    for method, url, body, field in cases:
        r = edge.client.request(method, url, json=body, headers=h)
        body_ = assert_error(r, 422, "invalid_input")
        assert body_["error"]["field"] == field, (url, body_)
    r = edge.client.get("/v1/actions", params={"agent_id": NUL}, headers=h)
    assert assert_error(r, 422)["error"]["field"] == "agent_id"
    r = edge.client.post(
        "/v1/actions",
        json={"tool": "refund", "operation": "process", "params": {"amount": 1}},
        headers=edge.h(edge.agent) | {"Idempotency-Key": NUL},
    )
    assert assert_error(r, 422)["error"]["field"] == "idempotency-key"
    assert edge.client.get(f"/v1/actions/{edge.pending}", headers=h).json()["status"] == "pending_approval"


def test_nul_in_dashboard_pages_and_forms(edge: Edge) -> None:
    web = TestClient(edge.client.app, follow_redirects=False)  # no lifespan: the app is running already
    page = web.get("/login")
    r = web.post("/login", data={"key": NUL, "csrf_token": CSRF_RE.search(page.text).group(1)})  # type: ignore[union-attr]
    assert r.status_code == 422, r.text[:300]
    page = web.get("/login")
    r = web.post("/login", data={"key": edge.admin, "csrf_token": CSRF_RE.search(page.text).group(1), "next": "/"})  # type: ignore[union-attr]
    assert r.status_code == 303, r.text[:300]
    for url in (
        f"/actions/{edge.pending[:-1]}%00",
        "/history?tool=a%00b",
        "/history?agent=a%00",
        "/history?q=%00",
        "/ui/events?action=%00",
    ):
        r = web.get(url)
        assert 400 <= r.status_code < 500, (url, r.status_code, r.text[:300])
    csrf = CSRF_RE.search(web.get(f"/actions/{edge.pending}").text).group(1)  # type: ignore[union-attr]
    for url, form in (
        (f"/actions/{edge.pending}/decide", {"decision": "deny", "reason": NUL}),
        ("/admin/keys", {"role": "agent", "name": NUL}),
        ("/admin/keys", {"role": "agent", "agent_id": NUL}),
    ):
        r = web.post(url, data={**form, "csrf_token": csrf})
        assert r.status_code == 422, (url, r.status_code, r.text[:300])
        assert "NUL" in r.text
    assert edge.client.get(f"/v1/actions/{edge.pending}", headers=edge.h(edge.admin)).json()["status"] == (
        "pending_approval"
    )


def test_service_and_cli_doors_refuse_nul_too(edge: Edge, tmp_path: Path) -> None:
    """What does not come through HTTP (the CLI, embedding) meets the same rule."""
    admin = edge.g.store.read(lambda c: keys.authenticate(c, edge.admin))
    assert admin is not None
    for call, field in (
        (lambda: edge.g.deny(admin, edge.pending, reason=NUL), "reason"),
        (lambda: edge.g.get(admin, NUL), "id"),
        (lambda: edge.g.list_actions(admin, tool=NUL), "tool"),
        (lambda: service_keys.create_key(edge.g.store, role="agent", name=NUL), "name"),
        (lambda: service_keys.create_key(edge.g.store, role="agent", name="x" * 201), "name"),
        (lambda: service_keys.revoke_key(edge.g.store, NUL), "key_id"),
    ):
        with pytest.raises(InvalidInput) as info:
            call()
        assert info.value.field == field


# -- limit buckets -----------------------------------------------------------------------------------------------


def _submit(edge: Edge, tool: str, operation: str, params: dict[str, Any]) -> Any:
    return edge.client.post(
        "/v1/actions", json={"tool": tool, "operation": operation, "params": params}, headers=edge.h(edge.agent)
    )


def test_limit_keys_of_any_length_are_counted_not_a_5xx(edge: Edge) -> None:
    for value in ("q" * 300, "é" * 5000, "short"):
        first = _submit(edge, "search", "run", {"query": value})
        assert first.status_code == 201 and first.json()["status"] == "allowed", first.text[:300]
        second = _submit(edge, "search", "run", {"query": value})
        assert second.status_code == 201, second.text[:300]
        assert second.json()["status"] == "denied"
        assert "Rate limit exceeded" in second.json()["reason"]
        assert len(second.json()["reason"]) < 200  # a huge key is not echoed whole
    account = "acct-" + "9" * 400
    assert _submit(edge, "pay", "send", {"account": account, "amount": 60}).json()["status"] == "allowed"
    over = _submit(edge, "pay", "send", {"account": account, "amount": 60}).json()
    assert over["status"] == "denied" and "Budget exceeded" in over["reason"]
    assert assert_error(_submit(edge, "search", "run", {"query": NUL}), 422)["error"]["field"] == "params.query"
    from faramesh.service import bucket_id

    widths = edge.g.store.read(lambda c: {len(b) for (b,) in c.execute(select(limit_usage.c.bucket)).all()})
    assert widths == {len(bucket_id("x"))}


def test_usage_recorded_under_the_raw_key_still_counts(edge: Edge) -> None:
    """Rows written before buckets were digests keep counting until they age out."""
    edge.g.store.write(
        lambda c: c.execute(
            limit_usage.insert().values(
                limit_id="search:rate", bucket="legacy", amount=1.0, action_id="old", at=edge.g.clock()
            )
        )
    )
    r = _submit(edge, "search", "run", {"query": "legacy"})
    assert r.json()["status"] == "denied", r.json()


def test_bucket_id_is_fixed_length_and_canonical() -> None:
    from faramesh.service import bucket_id

    assert bucket_id("a") == bucket_id("a") != bucket_id("b")
    assert len(bucket_id("x" * 10_000)) == len(bucket_id("")) == len("sha256:") + 64


# -- numbers -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["²", "١٢", " 12", "12 ", "1_2", "+1", "-1", "", "1.0", "0x1", "9" * 31])
def test_the_strict_parser_refuses_anything_but_ascii_digits(text: str) -> None:
    from faramesh.validation import parse_ascii_int

    assert parse_ascii_int(text) is None


def test_the_strict_parser_reads_ascii_digits_within_range() -> None:
    from faramesh.validation import parse_ascii_int

    assert parse_ascii_int("0") == 0
    assert parse_ascii_int("0012") == 12
    assert parse_ascii_int(b"42", maximum=None) == 42
    assert parse_ascii_int(str(2**63 - 1)) == 2**63 - 1
    assert parse_ascii_int(str(2**63)) is None


def test_unicode_digits_in_numeric_inputs_are_never_a_5xx(edge: Edge) -> None:
    h = edge.h(edge.admin)
    for query in ("cursor=²", "cursor=١٢", "cursor=1_0", "limit=²", "offset=%201"):
        assert_error(edge.client.get("/v1/actions?" + query, headers=h), 422)
    assert_error(edge.client.get("/v1/webhooks/none/deliveries?limit=²", headers=h), 422)
    r = edge.client.get("/v1/events", headers=h | {"Last-Event-ID": "²".encode("latin-1")})  # type: ignore[dict-item]
    assert assert_error(r, 422)["error"]["field"] == "Last-Event-ID"
    web = TestClient(edge.client.app, follow_redirects=False)  # no lifespan: the app is running already
    page = web.get("/login")
    web.post("/login", data={"key": edge.admin, "csrf_token": CSRF_RE.search(page.text).group(1)})  # type: ignore[union-attr]
    for cursor in ("²", "١٢", "1_0"):
        r = web.get("/history", params={"cursor": cursor})
        assert r.status_code == 200, r.text[:300]


def test_unicode_digits_in_the_live_feed_position_are_never_a_5xx(tmp_path: Path) -> None:
    """`/ui/events?after=²` and `Last-Event-ID: ²` on a real server: the feed starts live."""
    from tests.conftest import SEED_POLICY, ServerProcess
    from tests.web.conftest import http_login

    srv = ServerProcess(f"sqlite:///{tmp_path / 'f.db'}", SEED_POLICY, cwd=tmp_path).start()
    try:
        web = http_login(srv, srv.admin_key or "")
        for url, headers in (
            ("/ui/events?after=%C2%B2", {}),
            ("/ui/events?after=%D9%A1%D9%A2", {}),
            ("/ui/events", {"Last-Event-ID": "²".encode("latin-1")}),
        ):
            with web.stream("GET", url, headers=headers, timeout=5) as r:  # type: ignore[arg-type]
                assert r.status_code == 200, (url, r.status_code)
                assert r.headers["content-type"].startswith("text/event-stream")
    finally:
        srv.stop()


def test_a_policy_field_path_with_unicode_digits_is_a_key_not_a_crash() -> None:
    from faramesh.policy.values import parse_path

    path = parse_path("params.items.²")
    assert path is not None and path.steps()[-1] == ("²", -1)
    assert parse_path("params.items.1").steps()[-1] == ("1", 1)  # type: ignore[union-attr]

"""Every listed error code, driven through a real request on the in-process app.

Each test sends one request that must fail and checks it with :func:`assert_error`:
the status and code from faramesh.errors.ERRORS and the documented body
``{"detail", "error": {"code", "message", "field"}}``. The last tests check that every
code in the list is driven here, and that docs/errors.md shows the list as it is.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from faramesh.config import Settings
from faramesh.errors import ERRORS, ErrorCode, markdown_table
from faramesh.sdk.errors import EXCEPTION_FOR_CODE, error_for
from faramesh.server.app import create_app
from faramesh.service import Governor
from faramesh.service import keys as service_keys
from tests.conftest import SEED_POLICY

ROOT = Path(__file__).parents[2]


def assert_error(response: httpx.Response, status: int, code: ErrorCode, field: str | None = None) -> dict[str, Any]:
    """The response is the documented error with this status, listed code and (when given) field."""
    assert code in ERRORS and ERRORS[code][0] == status, f"{code} is not listed with status {status}"
    assert response.status_code == status, f"{response.status_code} {response.text[:500]}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"detail", "error"}, body
    assert isinstance(body["detail"], str) and body["detail"], body
    err = body["error"]
    assert {"code", "message", "field"} <= set(err), body
    assert err["code"] == code.value, body
    assert err["message"] == body["detail"], body
    if field is not None:
        assert err["field"] == field, body
    # The SDK maps the same body to the exception listed for the code.
    raised = error_for(response.status_code, body)
    assert type(raised) is EXCEPTION_FOR_CODE[code] and raised.code == code and raised.field == err["field"]
    return body


@dataclass
class App:
    client: TestClient
    governor: Governor
    admin: str
    agent: str
    approver: str

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def submit(self, amount: float, **headers: str) -> httpx.Response:
        body = {"tool": "refund", "operation": "process", "params": {"amount": amount}, "reattach": False}
        return self.client.post("/v1/actions", json=body, headers=self.auth(self.agent) | headers)


@contextlib.contextmanager
def running(tmp_path: Path, **settings: Any) -> Iterator[App]:
    """The app over a fresh SQLite file, its lifespan run, with an admin, an agent and an approver key."""
    options: dict[str, Any] = {"rate_limit": "off", "secret_key": "k" * 32} | settings
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'errors.db'}", policy=str(SEED_POLICY), **options))
    with TestClient(app, raise_server_exceptions=False) as client:
        g: Governor = app.state.governor
        secrets = {
            role: service_keys.create_key(g.store, role=role, name=role)[1] for role in ("admin", "agent", "approver")
        }
        yield App(client, g, secrets["admin"], secrets["agent"], secrets["approver"])


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    with running(tmp_path) as a:
        yield a


def test_bad_request(app: App) -> None:
    r = app.client.post(
        "/v1/actions",
        content=b"{}",
        headers=app.auth(app.agent) | {"Content-Length": "2", "Transfer-Encoding": "chunked"},
    )
    assert_error(r, 400, ErrorCode.BAD_REQUEST, field="headers")


def test_unauthorized(app: App) -> None:
    r = app.client.get("/v1/actions")
    assert_error(r, 401, ErrorCode.UNAUTHORIZED)
    assert r.headers["WWW-Authenticate"] == "Bearer"


def test_forbidden(app: App) -> None:
    assert_error(app.client.get("/v1/keys", headers=app.auth(app.agent)), 403, ErrorCode.FORBIDDEN)


def test_read_only(tmp_path: Path) -> None:
    hooks = tmp_path / "webhooks.yaml"
    hooks.write_text("- {url: 'http://127.0.0.1:9/hook', secret: 's3cret-s3cret', events: [action.created]}\n")
    with running(tmp_path, webhooks=str(hooks)) as a:
        listed = a.client.get("/v1/webhooks", headers=a.auth(a.admin))
        assert listed.status_code == 200, listed.text
        hook_id = next(h["id"] for h in listed.json()["webhooks"] if h["id"].startswith("file-"))
        r = a.client.delete(f"/v1/webhooks/{hook_id}", headers=a.auth(a.admin))
        assert_error(r, 403, ErrorCode.READ_ONLY, field="id")


def test_not_found(app: App) -> None:
    assert_error(app.client.get("/v1/actions/nope", headers=app.auth(app.agent)), 404, ErrorCode.NOT_FOUND)
    assert_error(app.client.get("/v1/no-such-route", headers=app.auth(app.agent)), 404, ErrorCode.NOT_FOUND)


def test_method_not_allowed(app: App) -> None:
    r = app.client.delete("/v1/actions", headers=app.auth(app.agent))
    assert_error(r, 405, ErrorCode.METHOD_NOT_ALLOWED)


def test_invalid_transition(app: App) -> None:
    allowed = app.submit(5).json()
    r = app.client.post(f"/v1/actions/{allowed['id']}/approve", json={}, headers=app.auth(app.approver))
    body = assert_error(r, 409, ErrorCode.INVALID_TRANSITION)
    assert body["error"]["status"] == "allowed"


def test_idempotency_mismatch(app: App) -> None:
    assert app.submit(5, **{"Idempotency-Key": "once"}).status_code == 201
    r = app.submit(6, **{"Idempotency-Key": "once"})
    assert_error(r, 409, ErrorCode.IDEMPOTENCY_MISMATCH, field="Idempotency-Key")


def test_request_hash_mismatch(app: App) -> None:
    pending = app.submit(500).json()
    assert pending["status"] == "pending_approval"
    r = app.client.post(
        f"/v1/actions/{pending['id']}/approve", json={"request_hash": "0" * 64}, headers=app.auth(app.approver)
    )
    assert_error(r, 409, ErrorCode.REQUEST_HASH_MISMATCH, field="request_hash")


def test_outcome_unknown(app: App) -> None:
    started = app.submit(7).json()
    assert app.client.post(f"/v1/actions/{started['id']}/start", headers=app.auth(app.agent)).status_code == 200
    app.governor.expire_due(now=app.governor.clock() + app.governor.execution_lease + 1)  # the lease runs out
    body = assert_error(app.submit(7), 409, ErrorCode.OUTCOME_UNKNOWN)
    assert body["error"]["action_id"] == started["id"] and body["error"]["status"] == "outcome_unknown"


def test_too_large(tmp_path: Path) -> None:
    with running(tmp_path, max_body_bytes=1024) as a:
        body = {"tool": "refund", "operation": "process", "params": {"note": "x" * 2000}}
        r = a.client.post("/v1/actions", json=body, headers=a.auth(a.agent))
        assert_error(r, 413, ErrorCode.TOO_LARGE, field="body")


def test_unsupported_media_type(app: App) -> None:
    r = app.client.post(
        "/v1/actions", content=b"tool=refund", headers=app.auth(app.agent) | {"Content-Type": "text/plain"}
    )
    assert_error(r, 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, field="content-type")


def test_invalid_input(app: App) -> None:
    r = app.client.post("/v1/actions", json={"operation": "process"}, headers=app.auth(app.agent))
    assert_error(r, 422, ErrorCode.INVALID_INPUT, field="tool")


def test_invalid_json(app: App) -> None:
    r = app.client.post(
        "/v1/actions", content=b'{"tool": ', headers=app.auth(app.agent) | {"Content-Type": "application/json"}
    )
    assert_error(r, 422, ErrorCode.INVALID_JSON, field="body")


def test_rate_limited(tmp_path: Path) -> None:
    with running(tmp_path, rate_limit="2/h") as a:
        codes = [a.client.get("/v1/actions", headers=a.auth(a.agent)) for _ in range(3)]
        assert [r.status_code for r in codes[:2]] == [200, 200]
        assert_error(codes[2], 429, ErrorCode.RATE_LIMITED)
        assert int(codes[2].headers["Retry-After"]) >= 1


def test_headers_too_large(tmp_path: Path) -> None:
    with running(tmp_path, max_header_bytes=4096) as a:
        r = a.client.get("/v1/actions", headers=a.auth(a.agent) | {"X-Padding": "x" * 5000})
        assert_error(r, 431, ErrorCode.HEADERS_TOO_LARGE, field="headers")


def test_internal(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault")

    action = app.submit(5).json()
    monkeypatch.setattr(app.governor, "get", broken)
    r = app.client.get(f"/v1/actions/{action['id']}", headers=app.auth(app.agent))
    body = assert_error(r, 500, ErrorCode.INTERNAL)
    assert "injected" not in r.text  # the cause is logged, not sent
    assert "outcome" not in body["error"]  # a read changes nothing


def test_unavailable(app: App) -> None:
    app.governor.store.close()
    r = app.client.get("/ready")
    body = assert_error(r, 503, ErrorCode.UNAVAILABLE)
    assert body["error"]["check"] in ("database_read", "database_write")


def test_server_draining(app: App) -> None:
    pending = app.submit(500).json()
    app.governor.hub.drain(1)  # what SIGTERM does first
    r = app.client.get(f"/v1/actions/{pending['id']}/wait", params={"timeout": 1}, headers=app.auth(app.agent))
    assert_error(r, 503, ErrorCode.SERVER_DRAINING)
    assert r.headers["Retry-After"] == "1"


# -- the list, this module and the docs agree ----------------------------------------------------------------------


def test_every_listed_code_is_driven_here() -> None:
    """A code added to faramesh.errors.ERRORS fails here until a request above produces it."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    driven = {
        node.args[2].attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "assert_error"
        and len(node.args) >= 3
        and isinstance(node.args[2], ast.Attribute)
    }
    assert {code.name for code in ErrorCode} - driven == set()
    assert set(ErrorCode) == set(ERRORS)


def test_the_docs_table_is_the_list() -> None:
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    start = text.index("<!-- generated from faramesh.errors.ERRORS")
    table = text[text.index("\n", start) + 1 : text.index("<!-- end of generated table -->")].strip()
    assert table == markdown_table(), "regenerate the table in docs/errors.md from faramesh.errors.markdown_table()"

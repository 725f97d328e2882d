"""Helpers for the permit and outcome-ledger tests: the seed policy in-process (refunds up
to 100 allowed, larger ones held, user deletion denied), its keys and requests."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from click.testing import CliRunner

from faramesh.cli.main import main
from tests.inprocess import InProcessServer, auth

SMALL = {"tool": "refund", "operation": "process", "params": {"amount": 50, "customer_id": "cus_1"}}
LARGE = {"tool": "refund", "operation": "process", "params": {"amount": 500, "customer_id": "cus_2"}}
DELETE = {"tool": "user_management", "operation": "delete", "params": {"user_id": "u_1"}}


def keys(app: InProcessServer) -> dict[str, str]:
    return {
        "agent": app.create_key("agent", agent_id="billing-bot"),
        "other": app.create_key("agent", agent_id="other-bot"),
        "approver": app.create_key("approver", name="ann"),
        "admin": app.admin_key,
    }


def post(app: InProcessServer, path: str, key: str, body: Any = None) -> httpx.Response:
    return app.post(path, json=body, headers=auth(key))


def submit(app: InProcessServer, key: str, body: dict[str, Any]) -> dict[str, Any]:
    r = post(app, "/v1/actions", key, body)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def get(app: InProcessServer, key: str, action_id: str) -> dict[str, Any]:
    r = app.get(f"/v1/actions/{action_id}", headers=auth(key))
    assert r.status_code == 200, r.text
    return dict(r.json())


def jwks(app: InProcessServer) -> dict[str, Any]:
    r = app.get("/v1/permits/keys")  # no API key
    assert r.status_code == 200, r.text
    return dict(r.json())


def events(app: InProcessServer, action_id: str) -> list[dict[str, Any]]:
    r = app.get(f"/v1/actions/{action_id}/events", headers=auth(app.admin_key))
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


def audit_verify(database_url: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", "verify"], env={"FARAMESH_DATABASE_URL": database_url})
    return result.exit_code, result.output


def b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

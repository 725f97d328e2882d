"""The Slack interactions endpoint takes requests without an API key (Slack signs
them instead), so it is attacked on its own: forged, replayed and malformed
requests are refused with a 4xx and change nothing; signed requests with hostile
payloads never cause a server error."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from faramesh.notify.slack import slack_signature
from tests.adversarial.support import assert_error, raw_exchange, unchanged
from tests.conftest import SEED_POLICY, ServerProcess, auth

SECRET = "adversarial-signing-secret"
PATH = "/v1/integrations/slack/interactions"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def slack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("slack")
    # The approver key is created first, on an empty database, so the config can name it.
    boot = ServerProcess(f"sqlite:///{tmp / 'faramesh.db'}", SEED_POLICY, cwd=tmp).start()
    approver = boot.create_key("approver")
    agent = boot.create_key("agent")
    listed = httpx.get(boot.url + "/v1/keys", headers=auth(boot.admin_key or "")).json()["keys"]
    approver_id = next(k["id"] for k in listed if approver.startswith(k["prefix"]))
    admin = boot.admin_key
    boot.stop()
    config = tmp / "slack.yaml"
    config.write_text(json.dumps({"signing_secret": SECRET, "users": {"U0APPROVER": approver_id}}))
    srv = ServerProcess(
        f"sqlite:///{tmp / 'faramesh.db'}", SEED_POLICY, cwd=tmp, extra_args=("--slack-config", str(config))
    ).start()
    srv.admin_key = admin
    pending = httpx.post(
        srv.url + "/v1/actions",
        json={"tool": "refund", "operation": "process", "params": {"amount": 500}},
        headers=auth(agent),
    ).json()["id"]
    yield {"server": srv, "pending": pending}
    srv.stop()


def form(payload: Any) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return b"payload=" + quote(text).encode()


def press(action_id: str, user: str = "U0APPROVER", kind: str = "faramesh_approve") -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": user}, "actions": [{"action_id": kind, "value": action_id}]}


def signed(body: bytes, ts: str | None = None) -> dict[str, str]:
    ts = ts or str(int(time.time()))
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(SECRET, ts, body),
        "Content-Type": FORM,
    }


def send(srv: ServerProcess, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(srv.url + PATH, content=body, headers=headers, timeout=30)


FORGED: list[tuple[str, dict[str, str]]] = [
    ("no-headers", {"Content-Type": FORM}),
    ("no-signature", {"X-Slack-Request-Timestamp": "{now}", "Content-Type": FORM}),
    ("no-timestamp", {"X-Slack-Signature": "v0=00", "Content-Type": FORM}),
    ("wrong-signature", {"X-Slack-Request-Timestamp": "{now}", "X-Slack-Signature": "v0=" + "0" * 64}),
    ("signature-for-other-secret", {"X-Slack-Request-Timestamp": "{now}", "X-Slack-Signature": "{other}"}),
    ("old-timestamp", {"X-Slack-Request-Timestamp": "{old}", "X-Slack-Signature": "{signed_old}"}),
    ("future-timestamp", {"X-Slack-Request-Timestamp": "{future}", "X-Slack-Signature": "{signed_future}"}),
    ("negative-timestamp", {"X-Slack-Request-Timestamp": "-5", "X-Slack-Signature": "v0=00"}),
    ("float-timestamp", {"X-Slack-Request-Timestamp": "{now}.5", "X-Slack-Signature": "v0=00"}),
    ("huge-timestamp", {"X-Slack-Request-Timestamp": "9" * 5000, "X-Slack-Signature": "v0=00"}),
    ("empty-signature", {"X-Slack-Request-Timestamp": "{now}", "X-Slack-Signature": ""}),
]


@pytest.mark.parametrize(("label", "headers"), FORGED, ids=[f[0] for f in FORGED])
def test_forged_or_replayed_presses_are_refused(slack: dict[str, Any], label: str, headers: dict[str, str]) -> None:
    srv: ServerProcess = slack["server"]
    body = form(press(slack["pending"]))
    now = int(time.time())
    fill = {
        "{now}": str(now),
        "{old}": str(now - 3600),
        "{future}": str(now + 3600),
        "{other}": slack_signature("not-the-secret", str(now), body),
        "{signed_old}": slack_signature(SECRET, str(now - 3600), body),
        "{signed_future}": slack_signature(SECRET, str(now + 3600), body),
    }
    real = {}
    for k, v in headers.items():
        for placeholder, value in fill.items():
            v = v.replace(placeholder, value)
        real[k] = v
    with unchanged(srv):
        r = send(srv, body, {"Content-Type": FORM} | real)
    assert_error(r, 401, "unauthorized")


@pytest.mark.parametrize(
    "timestamp",
    [b"\xb2", b"1\xb9", b"\xd9\xa1\xd9\xa2", b"\xef\xbc\x91"],
    ids=["superscript", "digit-superscript", "arabic-digits", "full-width-digit"],
)
def test_non_ascii_digit_timestamps_are_refused(slack: dict[str, Any], timestamp: bytes) -> None:
    """str.isdigit() accepts these; they must not reach int() (a 500 before the fix)."""
    srv: ServerProcess = slack["server"]
    with unchanged(srv):
        resp = raw_exchange(
            srv,
            b"POST "
            + PATH.encode()
            + b" HTTP/1.1\r\nHost: x\r\nContent-Type: "
            + FORM.encode()
            + b"\r\nContent-Length: 2\r\nX-Slack-Signature: v0=ab\r\nX-Slack-Request-Timestamp: "
            + timestamp
            + b"\r\n\r\nab",
        )
    assert resp.status == 401, resp
    assert json.loads(resp.body)["error"]["code"] == "unauthorized"


HOSTILE_PAYLOADS: list[tuple[str, Any]] = [
    ("not-a-form", b"\xff\xfe\x00"),
    ("no-payload-field", b"other=1"),
    ("payload-not-json", form("{not json")),
    ("payload-nan", form('{"type": "block_actions", "x": NaN}')),
    ("payload-deep", form("[" * 100_000 + "]" * 100_000)),
    ("payload-list", form([1, 2])),
    ("wrong-type", form({"type": "view_submission"})),
    ("no-user", form({"type": "block_actions", "actions": [{"action_id": "faramesh_approve", "value": "x"}]})),
    ("user-id-number", form(press("x") | {"user": {"id": 5}})),
    ("no-actions", form({"type": "block_actions", "user": {"id": "U0APPROVER"}})),
    ("actions-empty", form(press("x") | {"actions": []})),
    ("unknown-button", form(press("x", kind="faramesh_delete_everything"))),
    ("no-action-id", form(press(""))),
    ("long-action-id", form(press("a" * 65))),
    ("unknown-action", form(press("00000000-0000-4000-8000-000000000000"))),
    ("unmapped-user", form(press("{pending}", user="U0STRANGER"))),
    ("username-object", form(press("{pending}", user="U0STRANGER") | {"user": {"id": "U0X", "username": {"a": 1}}})),
]


@pytest.mark.parametrize(("label", "body"), HOSTILE_PAYLOADS, ids=[p[0] for p in HOSTILE_PAYLOADS])
def test_signed_hostile_payloads_never_cause_a_server_error(slack: dict[str, Any], label: str, body: bytes) -> None:
    srv: ServerProcess = slack["server"]
    body = body.replace(b"%7Bpending%7D", slack["pending"].encode())
    with unchanged(srv):
        r = send(srv, body, signed(body))
    assert r.status_code < 500, r.text
    # Refused with the error shape: as an HTTP error, or as a Slack reply that
    # carries the same fields (a genuine request whose decision was refused).
    data = r.json()
    assert data["error"]["code"] and data["detail"] == data["error"]["message"]


def test_a_genuine_press_still_works(slack: dict[str, Any]) -> None:
    srv: ServerProcess = slack["server"]
    body = form(press(slack["pending"]))
    r = send(srv, body, signed(body))
    assert r.status_code == 200, r.text
    status = httpx.get(f"{srv.url}/v1/actions/{slack['pending']}", headers=auth(srv.admin_key or "")).json()["status"]
    assert status == "approved"

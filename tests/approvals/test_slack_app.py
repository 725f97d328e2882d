"""Slack through its Web API, against a real local HTTP server standing in for
slack.com: the held action's message is posted once and updated in place after any
decision (Slack, dashboard/REST, CLI, expiry) with its buttons gone; Deny opens a modal
whose reason reaches the agent; high-risk approvals ask for confirmation; an unlinked
user is told how to link. Requests are signed as Slack signs them."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from tests.approvals.support import (
    POLICY,
    cli_key,
    eventually,
    get,
    slack_deny_submission,
    slack_request,
    submit,
)
from tests.conftest import ServerProcess, auth, faramesh_cmd

SECRET = "slack-app-signing-secret"
APPROVER_USER, STRANGER = "U0APPROVER", "U0STRANGER"
CHANNEL, ESCALATION = "C0APPROVALS", "C0LEADS"


@dataclass
class FakeSlack:
    """slack.com's Web API and response_url hooks on a free local port: records each call."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if "json" in (self.headers.get("Content-Type") or ""):
                    body = json.loads(raw or "{}")
                else:
                    body = {k: v[0] for k, v in parse_qs(raw).items()}
                    for key in ("blocks", "view"):
                        if isinstance(body.get(key), str):
                            body[key] = json.loads(body[key])
                method = self.path.rsplit("/", 1)[-1] if self.path.startswith("/api/") else "response_url"
                with fake.lock:
                    ts = body.get("ts") or f"1700000000.{len(fake.calls) + 1:06d}"
                    fake.calls.append((method, body | {"answered_ts": ts}))
                answer = {"ok": True, "ts": ts, "channel": body.get("channel")}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def of(self, method: str, action_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            found = [body for m, body in self.calls if m == method]
        return [b for b in found if action_id is None or action_id in json.dumps(b)]


@dataclass
class App:
    server: ServerProcess
    slack: FakeSlack
    agent: str
    approver_key_id: str

    def interact(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(self.server.url + "/v1/integrations/slack/interactions", content=body, headers=headers)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    tmp = tmp_path_factory.mktemp("slack-app")
    db = f"sqlite:///{tmp / 'slack.db'}"
    approver_id, _ = cli_key(db, "approver", name="Approver via Slack")
    slack = FakeSlack().start()
    config = tmp / "slack.yaml"
    config.write_text(
        json.dumps(
            {
                "signing_secret": SECRET,
                "users": {APPROVER_USER: approver_id},
                "bot_token": "xoxb-test-token",
                "channel": CHANNEL,
                "api_url": slack.url + "/api/",
                "escalation_channels": {"finance-leads": ESCALATION},
                "dashboard_url": "https://faramesh.example.com",
            }
        )
    )
    server = ServerProcess(db, POLICY, ("--slack-config", str(config)), cwd=tmp).start()
    try:
        yield App(server, slack, server.create_key("agent"), approver_id)
    finally:
        server.stop()
        slack.stop()


def posted(app: App, action_id: str) -> dict[str, Any]:
    [message] = eventually(lambda: app.slack.of("chat.postMessage", action_id))
    return message


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def updated(app: App, action_id: str, word: str) -> dict[str, Any]:
    """The latest chat.update of the action's message whose text says `word`."""
    found = eventually(lambda: [u for u in app.slack.of("chat.update", action_id) if word in u["text"]])
    return found[-1]


def test_a_decision_in_the_dashboard_updates_the_original_message(app: App) -> None:
    action = submit(app.server, app.agent, "refund", "process", amount=700)
    message = posted(app, action["id"])
    assert message["channel"] == CHANNEL and "Approval needed" in message["text"]
    assert [b["action_id"] for b in buttons(message)] == ["faramesh_approve", "faramesh_deny"]
    assert "faramesh.example.com/actions/" + action["id"] in json.dumps(message["blocks"])
    approver = app.server.create_key("approver", name="dana")
    r = httpx.post(
        app.server.url + f"/v1/actions/{action['id']}/approve", json={"reason": "ok"}, headers=auth(approver)
    )
    assert r.status_code == 200
    update = updated(app, action["id"], "Approved")
    # The same message (channel and ts of the post), its buttons gone, who and when said.
    assert update["channel"] == CHANNEL and update["ts"] == message["answered_ts"]
    assert buttons(update) == []
    context = json.dumps(update["blocks"])
    assert "approved by key:" in context and "(dana)" in context and " at 20" in context
    # No new message was posted for the decision.
    assert len(app.slack.of("chat.postMessage", action["id"])) == 1


def test_decisions_from_slack_the_cli_and_expiry_update_it_too(app: App, tmp_path: Any) -> None:
    # From Slack: the press is decided and the message is updated, not re-posted.
    pressed = submit(app.server, app.agent, "refund", "process", amount=701)
    value = buttons(posted(app, pressed["id"]))[0]["value"]
    body, headers = slack_request(SECRET, APPROVER_USER, value)
    assert app.interact(body, headers).json()["status"] == "approved"
    assert buttons(updated(app, pressed["id"], "Approved")) == []
    # From the CLI (deny with a reason).
    denied = submit(app.server, app.agent, "refund", "process", amount=702)
    posted(app, denied["id"])
    admin = app.server.admin_key or ""
    out = subprocess.run(
        faramesh_cmd("deny", denied["id"], "--reason", "not this customer"),
        capture_output=True,
        text=True,
        env={"FARAMESH_URL": app.server.url, "FARAMESH_API_KEY": admin, "PATH": "/usr/bin:/bin"},
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    update = updated(app, denied["id"], "Denied")
    assert buttons(update) == [] and "not this customer" in json.dumps(update["blocks"])
    # From expiry (the deploy rule gives a second).
    expiring = submit(app.server, app.agent, "deploy", "prod", version="1.2.3")
    posted(app, expiring["id"])
    eventually(lambda: get(app.server, app.agent, expiring["id"])["status"] == "denied")
    update = updated(app, expiring["id"], "Denied")
    assert buttons(update) == [] and "system:expiry" in json.dumps(update["blocks"])
    for action in (pressed, denied, expiring):
        assert len(app.slack.of("chat.postMessage", action["id"])) == 1


def test_deny_opens_a_modal_and_its_reason_reaches_the_agent(app: App) -> None:
    action = submit(app.server, app.agent, "refund", "process", amount=703)
    deny_button = buttons(posted(app, action["id"]))[1]
    assert deny_button["text"]["text"] == "Deny…"
    body, headers = slack_request(SECRET, APPROVER_USER, deny_button["value"], approve=False, trigger_id="T-123.456")
    r = app.interact(body, headers)
    assert r.status_code == 200 and r.json()["opened"] == "deny_reason"
    assert get(app.server, app.agent, action["id"])["status"] == "pending_approval"  # nothing decided yet
    [opened] = eventually(lambda: [v for v in app.slack.of("views.open") if v.get("trigger_id") == "T-123.456"])
    view = opened["view"]
    assert view["callback_id"] == "faramesh_deny_reason" and view["private_metadata"] == deny_button["value"]

    # An empty reason is refused inside the modal.
    body, headers = slack_deny_submission(SECRET, APPROVER_USER, view["private_metadata"], "   ")
    assert app.interact(body, headers).json()["response_action"] == "errors"
    body, headers = slack_deny_submission(SECRET, APPROVER_USER, view["private_metadata"], "customer asked to cancel")
    r = app.interact(body, headers)
    assert r.status_code == 200 and r.json()["response_action"] == "clear"
    seen_by_agent = get(app.server, app.agent, action["id"])
    assert seen_by_agent["status"] == "denied" and seen_by_agent["reason"] == "customer asked to cancel"
    update = updated(app, action["id"], "Denied")
    assert buttons(update) == [] and "customer asked to cancel" in json.dumps(update["blocks"])
    # A modal submitted after someone else decided is refused in the modal, not applied twice.
    body, headers = slack_deny_submission(SECRET, APPROVER_USER, view["private_metadata"], "again")
    late = app.interact(body, headers).json()
    assert late["response_action"] == "errors" and late["error"]["code"] == "invalid_transition"


def test_approve_on_a_high_risk_action_asks_for_confirmation(app: App) -> None:
    high = submit(app.server, app.agent, "refund", "process", amount=704)  # high
    approve, deny = buttons(posted(app, high["id"]))
    assert approve["confirm"]["confirm"]["text"] == "Approve" and "high risk" in approve["confirm"]["text"]["text"]
    assert "confirm" not in deny  # Deny asks through its modal instead
    wire = submit(app.server, app.agent, "wire", "send", amount=5)  # critical
    assert "confirm" in buttons(posted(app, wire["id"]))[0]


def test_an_unlinked_user_is_told_how_to_link(app: App) -> None:
    action = submit(app.server, app.agent, "refund", "process", amount=705)
    value = buttons(posted(app, action["id"]))[0]["value"]
    hook = app.slack.url + "/hooks/response/1"
    body, headers = slack_request(SECRET, STRANGER, value, response_url=hook)
    r = app.interact(body, headers)
    assert r.status_code == 200 and r.json()["error"]["code"] == "forbidden"
    [note] = eventually(lambda: [c for c in app.slack.of("response_url") if STRANGER in c.get("text", "")])
    assert note["response_type"] == "ephemeral" and note["replace_original"] is False
    assert f"{STRANGER}: <your key id>" in note["text"] and "faramesh keys list" in note["text"]
    assert get(app.server, app.agent, action["id"])["status"] == "pending_approval"
    # A response_url elsewhere than Slack (or the configured API host) is never called.
    body, headers = slack_request(SECRET, STRANGER, value, response_url="http://127.0.0.1:9/elsewhere")
    assert app.interact(body, headers).status_code == 200


def test_without_a_modal_deny_asks_to_confirm(app: App) -> None:
    from faramesh.notify.slack import render_message

    action = {"id": "a1", "tool": "t", "operation": "o", "status": "pending_approval", "risk_level": "low"}
    message = render_message("action.created", action | {"request_hash": "0" * 64})
    approve, deny = buttons(message)
    assert "confirm" not in approve and deny["confirm"]["style"] == "danger"


def test_reminders_and_escalations_reach_slack(app: App) -> None:
    # The pages rule reminds after a second and escalates to finance-leads after two.
    action = submit(app.server, app.agent, "page", "oncall", team="payments")
    first = posted(app, action["id"])
    [reply] = eventually(lambda: [m for m in app.slack.of("chat.postMessage") if m.get("thread_ts")])
    assert reply["channel"] == CHANNEL and reply["thread_ts"] == first["answered_ts"]
    assert "Still waiting" in reply["text"]
    [escalated] = eventually(
        lambda: [m for m in app.slack.of("chat.postMessage", action["id"]) if m["channel"] == ESCALATION]
    )
    assert "Escalated" in escalated["text"] and len(buttons(escalated)) == 2
    approver = app.server.create_key("approver", name="lead")
    httpx.post(
        app.server.url + f"/v1/actions/{action['id']}/approve", json={}, headers=auth(approver)
    ).raise_for_status()
    # Both messages are updated in place; neither keeps its buttons.
    done = eventually(
        lambda: (
            {
                u["channel"]: u
                for u in app.slack.of("chat.update", action["id"])
                if "Approved" in u["text"] and not buttons(u)
            }
            if {CHANNEL, ESCALATION}
            <= {u["channel"] for u in app.slack.of("chat.update", action["id"]) if "Approved" in u["text"]}
            else None
        )
    )
    assert done[CHANNEL]["ts"] == first["answered_ts"] and done[ESCALATION]["ts"] == escalated["answered_ts"]


def test_an_action_cancelled_by_its_agent_updates_the_message(app: App) -> None:
    held = submit(app.server, app.agent, "refund", "process", amount=703)
    posted(app, held["id"])
    r = httpx.post(
        app.server.url + f"/v1/actions/{held['id']}/cancel",
        json={"reason": "the user left"},
        headers=auth(app.agent),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    update = updated(app, held["id"], "Cancelled")
    assert buttons(update) == [] and "the user left" in json.dumps(update["blocks"])
    assert len(app.slack.of("chat.postMessage", held["id"])) == 1

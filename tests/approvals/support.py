"""Helpers for the approval-workflow tests: a real local HTTP receiver, Slack signing,
and small waits that poll a condition (never asserting how long it took)."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx

from tests.conftest import ServerProcess, auth, faramesh_cmd
from tests.inprocess import InProcessServer

Server = ServerProcess | InProcessServer  # a server process or the app in-process

POLICY = Path(__file__).parent / "policy.yaml"
T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll `check` until it returns something truthy; fail with the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server on a free local port that records every POST.

    `statuses` are answered in order (then 200). Started with hang=True, every request
    blocks until `release` is set, like a receiver that stopped answering.
    """

    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    hanging: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def start(self, *, hang: bool = False) -> Receiver:
        if not hang:
            self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body, time.time()))
                    receiver.hanging += 1
                receiver.release.wait(60)
                with receiver._lock:
                    receiver.hanging -= 1
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"receiver failed")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def of_type(self, event_type: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.headers.get("X-Faramesh-Event") == event_type]


@contextmanager
def receiving(statuses: list[int] | None = None, *, hang: bool = False) -> Iterator[Receiver]:
    receiver = Receiver(statuses=list(statuses or [])).start(hang=hang)
    try:
        yield receiver
    finally:
        receiver.stop()


def submit(server: Server, key: str, tool: str, operation: str, **params: Any) -> dict[str, Any]:
    r = server.post(
        "/v1/actions",
        json={"tool": tool, "operation": operation, "params": params, "context": {}, "reattach": False},
        headers=auth(key),
        timeout=10,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def get(server: Server, key: str, action_id: str) -> dict[str, Any]:
    r = server.get(f"/v1/actions/{action_id}", headers=auth(key), timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def decide(
    server: Server, key: str, action_id: str, verb: str = "approve", timeout: float = 10, **body: Any
) -> httpx.Response:
    return server.post(f"/v1/actions/{action_id}/{verb}", json=body, headers=auth(key), timeout=timeout)


def cli_key(database_url: str, role: str, *groups: str, name: str = "") -> tuple[str, str]:
    """Create a key with the CLI on the database directly: (key id, secret)."""
    args = ["keys", "create", "--role", role, "--database-url", database_url, "--name", name or f"cli {role}"]
    args.append("--create-db")  # keys may be made before the server first starts
    for group in groups:
        args += ["--group", group]
    out = subprocess.run(faramesh_cmd(*args), capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    key_id = lines[0].split(" key ", 1)[1].split(None, 1)[0].rstrip(".,")
    return key_id, lines[-1]


# -- Slack ---------------------------------------------------------------------------
def slack_request(
    signing_secret: str,
    user_id: str,
    action_id: str,
    *,
    approve: bool = True,
    timestamp: int | None = None,
    response_url: str | None = None,
    trigger_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A block_actions interaction as Slack sends it: form-encoded `payload`, signed with
    v0=HMAC-SHA256(signing secret, "v0:{timestamp}:{body}"). Its response_url (where the
    server may answer) is left out unless given: tests point it at a local receiver."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": "alice", "name": "alice", "team_id": "T0001"},
        "api_app_id": "A0001",
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0001"},
        "actions": [
            {
                "action_id": "faramesh_approve" if approve else "faramesh_deny",
                "block_id": f"faramesh:{action_id}",
                "value": action_id,
                "type": "button",
                "action_ts": "1700000001.000200",
            }
        ],
    }
    if response_url is not None:
        payload["response_url"] = response_url
    if trigger_id is not None:
        payload["trigger_id"] = trigger_id
    return signed_slack_form(signing_secret, payload, timestamp)


def slack_deny_submission(
    signing_secret: str, user_id: str, private_metadata: str, reason: str
) -> tuple[bytes, dict[str, str]]:
    """The deny modal's view_submission, as Slack sends it when the presser submits a reason."""
    payload = {
        "type": "view_submission",
        "user": {"id": user_id, "username": "alice", "name": "alice", "team_id": "T0001"},
        "view": {
            "id": "V0001",
            "type": "modal",
            "callback_id": "faramesh_deny_reason",
            "private_metadata": private_metadata,
            "state": {"values": {"reason": {"reason_input": {"type": "plain_text_input", "value": reason}}}},
        },
    }
    return signed_slack_form(signing_secret, payload)


def signed_slack_form(
    signing_secret: str, payload: dict[str, Any], timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(signing_secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }
    return body, headers

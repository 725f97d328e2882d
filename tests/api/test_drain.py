"""SIGTERM while agents wait: open waits get 503 + Retry-After, streams end cleanly, and
the process exits promptly (instead of a 500 after the 5 s graceful-shutdown cut)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import ServerProcess, auth

# What uvicorn logs when open requests outlive its graceful shutdown and are cut (500).
CUT = "timeout graceful shutdown exceeded"


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc
        out["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_sigterm_answers_open_waits_with_503_and_exits_promptly(start_server: Callable[..., ServerProcess]) -> None:
    srv = start_server()
    agent = srv.create_key("agent")
    approver = srv.create_key("approver")
    action = httpx.post(
        srv.url + "/v1/actions",
        json={"tool": "refund", "operation": "process", "params": {"amount": 500}},
        headers=auth(agent),
    ).json()
    assert action["status"] == "pending_approval"

    wait, waited = _in_thread(
        lambda: httpx.get(
            f"{srv.url}/v1/actions/{action['id']}/wait", params={"timeout": 60}, headers=auth(agent), timeout=30
        )
    )
    streamed: list[str] = []
    connected = threading.Event()

    def stream() -> None:
        with httpx.stream("GET", srv.url + "/v1/events", headers=auth(approver), timeout=30) as r:
            for line in r.iter_lines():
                streamed.append(line)
                if line.startswith(": connected"):
                    connected.set()

    feed, fed = _in_thread(stream)
    assert connected.wait(10), streamed
    # A later request answered on another connection: the server has read the wait too.
    assert httpx.get(f"{srv.url}/v1/actions/{action['id']}", headers=auth(agent)).status_code == 200
    assert wait.is_alive()

    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    wait.join(timeout=10)
    feed.join(timeout=10)
    srv.proc.wait(timeout=10)

    response = waited["value"]
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    body = response.json()
    assert body["error"]["code"] == "server_draining" and body["detail"] == body["error"]["message"]
    # The stream ended normally (no cut connection) and told the client when to reconnect.
    assert "error" not in fed, fed
    assert any(line.startswith("retry:") for line in streamed), streamed
    # Nothing was left for uvicorn to cut: the drain ended every wait and stream itself.
    assert CUT not in "".join(srv.output), "".join(srv.output)
    # uvicorn re-raises the signal once shut down cleanly, so the exit is by SIGTERM.
    assert srv.proc.returncode in (0, -signal.SIGTERM), "".join(srv.output)
    assert "Traceback" not in "".join(srv.output)

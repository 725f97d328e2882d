"""`faramesh serve --workers N`: several processes on one port and one PostgreSQL
database behave as one server (waits get approvals made through any worker), stop
together on SIGTERM, and SQLite is refused with a clear message."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SEED_POLICY, ServerProcess, auth, faramesh_cmd

pytestmark = pytest.mark.backends("postgresql")


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def test_two_workers_share_the_port_and_the_approvals(start_server: Callable[..., ServerProcess]) -> None:
    srv = start_server(extra_args=("--workers", "2"))
    assert srv.proc is not None
    assert len(children_of(srv.proc.pid)) == 2
    agent, approver = srv.create_key("agent"), srv.create_key("approver")

    held = []
    for n in range(6):
        # A new connection each time, so the requests spread over both workers.
        r = httpx.post(
            srv.url + "/v1/actions",
            json={"tool": "refund", "operation": "process", "params": {"amount": 500 + n}},
            headers=auth(agent) | {"Connection": "close"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        held.append(r.json()["id"])

    answers: dict[str, Any] = {}

    def wait(action_id: str) -> None:
        r = httpx.get(
            f"{srv.url}/v1/actions/{action_id}/wait",
            params={"timeout": 60},
            headers=auth(agent) | {"Connection": "close"},
            timeout=90,
        )
        answers[action_id] = r.json()

    waiters = [threading.Thread(target=wait, args=(aid,)) for aid in held]
    for t in waiters:
        t.start()
    for aid in held:
        r = httpx.post(
            f"{srv.url}/v1/actions/{aid}/approve",
            json={"reason": "ok"},
            headers=auth(approver) | {"Connection": "close"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
    for t in waiters:
        t.join(90)
    assert {aid: answers[aid]["status"] for aid in held} == dict.fromkeys(held, "approved")


def test_sigterm_stops_every_worker(start_server: Callable[..., ServerProcess]) -> None:
    srv = start_server(extra_args=("--workers", "2"))
    assert srv.proc is not None
    workers = children_of(srv.proc.pid)
    assert len(workers) == 2
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=30) == 0, "".join(srv.output)
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_a_worker_that_dies_stops_the_server(start_server: Callable[..., ServerProcess]) -> None:
    srv = start_server(extra_args=("--workers", "2"))
    assert srv.proc is not None
    first, _ = children_of(srv.proc.pid)
    subprocess.run(["kill", "-9", str(first)], check=True)
    assert srv.proc.wait(timeout=30) == 1  # a supervisor restarts the whole server
    assert children_of(srv.proc.pid) == []


def test_workers_need_postgresql(tmp_path: Path) -> None:
    out = subprocess.run(
        faramesh_cmd(
            "serve", "--workers", "2", "--database-url", f"sqlite:///{tmp_path / 'f.db'}", "--policy", str(SEED_POLICY)
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "--workers above 1 needs PostgreSQL" in out.stderr
    assert not (tmp_path / "f.db").exists()

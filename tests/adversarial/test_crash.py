"""Crash: kill -9 the server while clients submit and report results. After a
restart on the same SQLite file every acknowledged action (and every acknowledged
result) is there, and `faramesh audit verify` finds the chain intact."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import ServerProcess, auth, faramesh_cmd

CLIENTS = 6


def test_kill_9_loses_no_acknowledged_write(start_server: Callable[..., ServerProcess]) -> None:
    srv = start_server(extra_args=("--rate-limit", "off"))
    admin = srv.admin_key or ""
    keys = [srv.create_key("agent") for _ in range(CLIENTS)]
    approver = srv.create_key("approver")
    acked: dict[str, dict[str, Any]] = {}  # action id -> the acknowledged action
    acked_results: dict[str, str] = {}  # action id -> status the result acknowledged
    acked_decisions: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()
    enough = threading.Event()

    def client(i: int) -> None:
        key = keys[i]
        n = 0
        with httpx.Client(base_url=srv.url, headers=auth(key), timeout=10) as c:
            while not stop.is_set():
                n += 1
                amount = (5, 500, None)[n % 3]
                params = {"amount": amount, "n": n} if amount is not None else {"n": n}
                try:
                    r = c.post("/v1/actions", json={"tool": "refund", "operation": "process", "params": params})
                    if r.status_code != 201:
                        continue
                    action = r.json()
                    with lock:
                        acked[action["id"]] = action
                        if len(acked) >= 60:
                            enough.set()
                    if action["status"] == "allowed" and n % 2:
                        rr = c.post(f"/v1/actions/{action['id']}/result", json={"success": True, "result": {"n": n}})
                        if rr.status_code == 200:
                            with lock:
                                acked_results[action["id"]] = rr.json()["status"]
                    elif action["status"] == "pending_approval" and i == 0:
                        rd = httpx.post(
                            f"{srv.url}/v1/actions/{action['id']}/approve", json={}, headers=auth(approver), timeout=10
                        )
                        if rd.status_code == 200:
                            with lock:
                                acked_decisions[action["id"]] = rd.json()["status"]
                except httpx.HTTPError:
                    # The server is gone: whatever was not acknowledged may or may not be there.
                    if stop.is_set():
                        return
                    time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    assert enough.wait(60), "clients did not get going"
    srv.kill9()  # mid-stream: the clients are still submitting
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) >= 60

    restarted = start_server(database_url=srv.database_url, extra_args=("--rate-limit", "off"))
    missing = []
    with httpx.Client(base_url=restarted.url, headers=auth(admin), timeout=30) as c:
        for action_id, action in acked.items():
            r = c.get(f"/v1/actions/{action_id}")
            if r.status_code != 200:
                missing.append(action_id)
                continue
            stored = r.json()
            assert stored["request_hash"] == action["request_hash"]
            assert stored["decision"] == action["decision"]
            if action_id in acked_results:
                assert stored["status"] == acked_results[action_id]
            elif action_id in acked_decisions:
                assert stored["status"] in (acked_decisions[action_id], "succeeded", "failed")
    assert not missing, f"{len(missing)} acknowledged actions lost: {missing[:5]}"

    out = subprocess.run(
        faramesh_cmd("audit", "verify", "--json", "--database-url", srv.database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True

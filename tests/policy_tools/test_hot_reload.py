"""Hot reload on the real server: the watched file, SIGHUP and the admin endpoint.

A broken edit is rejected with its problems in the log and the last good
policy keeps deciding; every decision records the hash of the policy that made it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from faramesh import audit
from faramesh.storage import Store
from tests.conftest import ServerProcess, auth

V1 = """
rules:
  - id: small-refunds
    match: {tool: refund, operation: process, amount_lte: 100}
    allow: true
"""
V2 = """
rules:
  - id: no-refunds
    match: {tool: refund}
    deny: true
    reason: Refunds are paused
"""
V3 = """
rules:
  - id: everything-waits
    match: {tool: refund}
    require_approval: true
    approval: {timeout: 1h}
"""
BROKEN = """
rules:
  - id: typo
    match: {tool: refund, amount_gtt: 5}
    allow: true
"""


def submit(server: ServerProcess, key: str, amount: float = 50) -> dict[str, Any]:
    r = httpx.post(
        server.url + "/v1/actions",
        json={"tool": "refund", "operation": "process", "params": {"amount": amount}, "reattach": False},
        headers=auth(key),
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def write(path: Path, text: str) -> None:
    # Written elsewhere and renamed over the file, as editors do: the watcher must see it either way.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@pytest.fixture
def watched(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> tuple[ServerProcess, Path, str]:
    policy = tmp_path / "watched.yaml"
    policy.write_text(V1)
    server = start_server(policy=policy)
    return server, policy, server.create_key("agent")


def policy_hash(server: ServerProcess) -> str:
    r = httpx.get(server.url + "/v1/policy", headers=auth(server.admin_key or ""), timeout=10)
    return str(r.json()["hash"])


def test_an_edit_to_the_watched_file_takes_effect(watched: tuple[ServerProcess, Path, str]) -> None:
    server, policy, agent = watched
    first = submit(server, agent)
    assert first["decision"] == "allow" and first["rule_id"] == "small-refunds"
    old_hash = first["policy_hash"]

    write(policy, V2)
    eventually(lambda: submit(server, agent)["decision"] == "deny", "the edited policy to decide")
    denied = submit(server, agent)
    assert denied["rule_id"] == "no-refunds" and denied["reason"] == "Refunds are paused"
    assert denied["policy_hash"] == policy_hash(server) != old_hash
    # each action keeps the hash of the policy that decided it
    again = httpx.get(f"{server.url}/v1/actions/{first['id']}", headers=auth(agent)).json()
    assert again["policy_hash"] == old_hash
    log = "".join(server.output)
    assert "reloaded by system:policy-watch" in log


def test_a_broken_edit_leaves_the_old_policy_deciding(watched: tuple[ServerProcess, Path, str]) -> None:
    server, policy, agent = watched
    good_hash = policy_hash(server)
    write(policy, BROKEN)
    eventually(lambda: "rejected" in "".join(server.output), "the rejection in the log")
    log = "".join(server.output)
    assert "amount_gtt" in log and "did you mean amount_gt?" in log and ":4:" in log
    assert "stays in force" in log
    # the last good policy still decides, well after the watcher has looked again
    time.sleep(1.2)
    for _ in range(3):
        action = submit(server, agent)
        assert action["decision"] == "allow" and action["policy_hash"] == good_hash
    assert "".join(server.output).count("rejected;") == 1  # once per edit, however often the watcher looks
    # an admin reload of the same broken file is refused with the problems
    r = httpx.post(server.url + "/v1/policy/reload", headers=auth(server.admin_key or ""), timeout=10)
    assert r.status_code == 422
    assert "amount_gtt" in r.json()["detail"]
    assert policy_hash(server) == good_hash
    # fixing the file is picked up again
    write(policy, V2)
    eventually(lambda: submit(server, agent)["decision"] == "deny", "the fixed policy to decide")


def test_sighup_reloads_when_the_watcher_is_off(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    policy = tmp_path / "hup.yaml"
    policy.write_text(V1)
    server = start_server(policy=policy, extra_args=("--policy-watch-interval", "0"))
    agent = server.create_key("agent")
    assert submit(server, agent)["decision"] == "allow"
    write(policy, V3)
    time.sleep(1.0)  # twice the default watch interval: with watching off, nothing changes
    assert submit(server, agent)["decision"] == "allow"
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    eventually(lambda: submit(server, agent)["decision"] == "require_approval", "the SIGHUP reload")
    assert server.proc.poll() is None  # SIGHUP reloads; it does not stop the server
    assert "reloaded by system:sighup" in "".join(server.output)


def test_admin_reload_is_audited(watched: tuple[ServerProcess, Path, str]) -> None:
    server, policy, agent = watched
    old_hash = policy_hash(server)
    policy.write_text(V3)
    r = httpx.post(server.url + "/v1/policy/reload", headers=auth(server.admin_key or ""), timeout=10)
    assert r.status_code == 200
    new_hash = r.json()["hash"]
    assert new_hash != old_hash and submit(server, agent)["decision"] == "require_approval"
    store = Store(server.database_url)
    try:
        records = store.read(lambda conn: audit.events_after(conn, 0, 10_000))
    finally:
        store.close()
    reloads = [rec for rec in records if rec.event == "policy.reloaded"]
    assert [(rec.data["old_hash"], rec.data["new_hash"]) for rec in reloads] == [(old_hash, new_hash)]

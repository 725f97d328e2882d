"""The approval CLI against a real server: approve (with --reason and --params), deny,
list pending actions, and watch the live event stream."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading

import pytest

from tests.approvals.support import decide, get, submit
from tests.conftest import ServerProcess, faramesh_cmd


@pytest.fixture(scope="module")
def keys(srv: ServerProcess) -> dict[str, str]:
    return {"agent": srv.create_key("agent"), "approver": srv.create_key("approver", name="cli reviewer")}


def run(srv: ServerProcess, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FARAMESH_URL": srv.url, "FARAMESH_API_KEY": key}
    return subprocess.run(faramesh_cmd(*args), capture_output=True, text=True, env=env, timeout=60)


def test_approve_with_reason_and_edited_params(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=400, customer_id="c1")
    out = run(
        srv,
        keys["approver"],
        "approve",
        action["id"],
        "--reason",
        "half now",
        "--params",
        '{"amount": 60, "customer_id": "c1"}',
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{action['id']} is now approved with edited params."
    after = get(srv, keys["agent"], action["id"])
    assert after["params"] == {"amount": 60, "customer_id": "c1"} and after["original_params"]["amount"] == 400
    assert after["decision_reason"] == "half now"


def test_approve_refuses_bad_params_and_policy_denied_edits(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=400)
    bad_json = run(srv, keys["approver"], "approve", action["id"], "--params", "{amount: 5")
    assert bad_json.returncode == 2 and "--params" in bad_json.stderr
    not_object = run(srv, keys["approver"], "approve", action["id"], "--params", "[1]")
    assert not_object.returncode == 2 and "JSON object" in not_object.stderr
    denied_edit = run(srv, keys["approver"], "approve", action["id"], "--params", '{"amount": 99999}')
    assert denied_edit.returncode == 1 and "HTTP 422" in denied_edit.stderr
    assert "never allowed" in denied_edit.stderr
    assert get(srv, keys["agent"], action["id"])["status"] == "pending_approval"


def test_deny_needs_a_reason(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=400)
    missing = run(srv, keys["approver"], "deny", action["id"])
    assert missing.returncode == 2 and "--reason" in missing.stderr
    out = run(srv, keys["approver"], "deny", action["id"], "--reason", "duplicate request")
    assert out.returncode == 0 and out.stdout.strip() == f"{action['id']} is now denied."
    assert get(srv, keys["agent"], action["id"])["reason"] == "duplicate request"


def test_agent_key_cannot_approve_from_the_cli(srv: ServerProcess, keys: dict[str, str]) -> None:
    action = submit(srv, keys["agent"], "refund", "process", amount=400)
    out = run(srv, keys["agent"], "approve", action["id"])
    assert out.returncode == 5 and "HTTP 403" in out.stderr


def test_list_pending_approval(srv: ServerProcess, keys: dict[str, str]) -> None:
    pending = submit(srv, keys["agent"], "refund", "process", amount=555)
    allowed = submit(srv, keys["agent"], "refund", "process", amount=5)
    out = run(srv, keys["approver"], "actions", "list", "--status", "pending_approval", "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    ids = {a["id"] for a in listed}
    assert pending["id"] in ids and allowed["id"] not in ids
    assert {a["status"] for a in listed} == {"pending_approval"}
    text = run(srv, keys["approver"], "actions", "list", "--status", "pending_approval")
    assert pending["id"] in text.stdout and "pending_approval" in text.stdout
    bad = run(srv, keys["approver"], "actions", "list", "--status", "maybe")
    assert bad.returncode == 1 and "status" in bad.stderr


def test_watch_prints_changes_live(srv: ServerProcess, keys: dict[str, str]) -> None:
    env = {**os.environ, "FARAMESH_URL": srv.url, "FARAMESH_API_KEY": keys["approver"], "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        faramesh_cmd("actions", "watch"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()

    def line_about(action_id: str, event_type: str, timeout: float = 20) -> str:
        while True:
            line = lines.get(timeout=timeout)
            if action_id in line and event_type in line:
                return line

    try:
        # The stream is live once a submission shows up (the command takes a moment to start).
        for attempt in range(60):
            first = submit(srv, keys["agent"], "refund", "process", amount=600 + attempt)
            try:
                line_about(first["id"], "action.created", timeout=0.5)
                break
            except queue.Empty:
                continue
        else:
            raise AssertionError("faramesh actions watch printed nothing")
        assert decide(srv, keys["approver"], first["id"], reason="watching").status_code == 200
        line = line_about(first["id"], "action.approved")
        assert "approved" in line and "refund.process" in line
    finally:
        proc.terminate()
        proc.wait(10)

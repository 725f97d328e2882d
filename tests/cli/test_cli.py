"""CLI commands, through Click's runner and as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
from click.testing import CliRunner

from faramesh.cli.main import main
from tests.conftest import SEED_POLICY, ServerProcess, auth, faramesh_cmd


def test_keys_create_prints_key_alone_on_last_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'k.db'}"
    out = subprocess.run(
        faramesh_cmd(
            "keys",
            "create",
            "--role",
            "agent",
            "--agent-id",
            "billing-bot",
            "--name",
            "bot",
            "--database-url",
            db,
            "--create-db",
        ),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("fm_") and " " not in last and len(last) > 40
    listed = CliRunner().invoke(main, ["keys", "list", "--json", "--database-url", db])
    [info] = json.loads(listed.output)
    assert info["role"] == "agent" and info["agent_id"] == "billing-bot" and info["name"] == "bot"
    assert last not in listed.output  # secrets are never listed
    revoked = CliRunner().invoke(main, ["keys", "revoke", info["id"], "--database-url", db])
    assert revoked.exit_code == 0
    assert json.loads(CliRunner().invoke(main, ["keys", "list", "--json", "--database-url", db]).output)[0]["revoked"]
    missing = CliRunner().invoke(main, ["keys", "revoke", "nope", "--database-url", db])
    assert missing.exit_code == 3 and "no key" in missing.output


def test_keys_created_by_cli_authenticate_against_server(start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server()
    out = subprocess.run(
        faramesh_cmd("keys", "create", "--role", "approver", "--database-url", server.database_url),
        capture_output=True,
        text=True,
        check=True,
    )
    key = out.stdout.strip().splitlines()[-1]
    assert httpx.get(server.url + "/v1/actions", headers=auth(key)).status_code == 200


def test_approve_deny_and_conflicts(server: ServerProcess) -> None:
    agent = server.create_key("agent")
    approver = server.create_key("approver")
    env = {**os.environ, "FARAMESH_URL": server.url, "FARAMESH_API_KEY": approver}
    ids = []
    for _ in range(2):
        r = httpx.post(
            server.url + "/v1/actions",
            headers=auth(agent),
            json={"tool": "refund", "operation": "process", "params": {"amount": 500}, "reattach": False},
        )
        ids.append(r.json()["id"])

    listed = subprocess.run(
        faramesh_cmd("actions", "list", "--status", "pending_approval", "--json"),
        env=env,
        capture_output=True,
        text=True,
    )
    assert {a["id"] for a in json.loads(listed.stdout)} >= set(ids)

    ok = subprocess.run(faramesh_cmd("approve", ids[0], "--reason", "fine"), env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "approved" in ok.stdout
    again = subprocess.run(faramesh_cmd("approve", ids[0]), env=env, capture_output=True, text=True)
    assert again.returncode == 4 and "409" in again.stderr and "approved" in again.stderr

    no_reason = subprocess.run(faramesh_cmd("deny", ids[1]), env=env, capture_output=True, text=True)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    denied = subprocess.run(faramesh_cmd("deny", ids[1], "--reason", "no"), env=env, capture_output=True, text=True)
    assert denied.returncode == 0 and "denied" in denied.stdout

    as_agent = subprocess.run(
        faramesh_cmd("approve", ids[1]), env={**env, "FARAMESH_API_KEY": agent}, capture_output=True, text=True
    )
    assert as_agent.returncode == 5 and "403" in as_agent.stderr

    shown = subprocess.run(faramesh_cmd("actions", "show", ids[1]), env=env, capture_output=True, text=True)
    assert json.loads(shown.stdout)["status"] == "denied"


def test_cli_against_unreachable_server_fails_clearly() -> None:
    env = {**os.environ, "FARAMESH_URL": "http://127.0.0.1:9", "FARAMESH_API_KEY": "fm_x"}
    out = subprocess.run(faramesh_cmd("approve", "abc"), env=env, capture_output=True, text=True)
    assert out.returncode == 6 and "cannot reach" in out.stderr


def test_policy_validate(tmp_path: Path) -> None:
    good = CliRunner().invoke(main, ["policy", "validate", str(SEED_POLICY)])
    assert good.exit_code == 0 and "valid" in good.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - match:\n      tool: refund\n      amount_gtt: 5\n    allow: true\n")
    result = CliRunner().invoke(main, ["policy", "validate", str(bad)])
    assert result.exit_code == 1
    assert ":4:" in result.output and "amount_gt" in result.output


def test_serve_prints_dashboard_and_admin_key_once(start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server()
    text = "".join(server.output)
    assert f"Dashboard: {server.url}/" in text and server.admin_key
    server.stop()
    again = ServerProcess(server.database_url, SEED_POLICY, cwd=server.cwd).start()
    try:
        assert again.admin_key is None  # not created (or shown) a second time
        assert "Log in with an approver or admin key" in "".join(again.output)
    finally:
        again.stop()


def test_serve_prints_the_policy_warnings_at_start(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "warned.yaml"
    policy.write_text("rules:\n  - {id: all, allow: true}\n  - {id: never, match: {tool: c}, deny: true}\n")
    server: ServerProcess = start_server(policy=policy)
    text = "".join(server.output)
    assert "Policy warning:" in text and "rule all matches every action" in text and "never" in text

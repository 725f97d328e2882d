"""Shadow mode on the app (in-process, and a server process for the dashboard page): the candidate's decision is recorded beside the real one and decides nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faramesh import audit
from faramesh.policy import Policy
from faramesh.storage import Store
from tests.conftest import SEED_POLICY, ServerProcess, auth, faramesh_cmd
from tests.inprocess import InProcessServer, poll
from tests.web.conftest import http_login

CANDIDATE = """
rules:
  - id: cap-50
    match: {tool: refund, operation: process, amount_gt: 50}
    deny: true
    reason: Refunds over 50 are paused
  - id: small
    match: {tool: refund, operation: process}
    allow: true
"""


def submit(server: ServerProcess | InProcessServer, key: str, amount: float, tool: str = "refund") -> dict[str, Any]:
    body = {"tool": tool, "operation": "process", "params": {"amount": amount}, "reattach": False}
    r = server.post("/v1/actions", json=body, headers=auth(key), timeout=10)
    assert r.status_code == 201, r.text
    return dict(r.json())


def start(tmp_path: Path, make_client: Callable[..., InProcessServer], candidate: str = CANDIDATE) -> InProcessServer:
    shadow = tmp_path / "candidate.yaml"
    shadow.write_text(candidate)
    return make_client(policy=SEED_POLICY, shadow_policy=str(shadow), policy_watch_interval=0.05)


def test_shadow_decisions_are_recorded_and_never_applied(
    tmp_path: Path, make_client: Callable[..., InProcessServer]
) -> None:
    server = start(tmp_path, make_client)
    agent = server.create_key("agent")
    candidate_hash = Policy.from_yaml(CANDIDATE).hash

    same = submit(server, agent, 20)  # both allow
    diverged = submit(server, agent, 80)  # active allows, candidate denies
    held = submit(server, agent, 500)  # active holds for approval, candidate denies
    other = submit(server, agent, 1, tool="user_management")  # active denies, candidate: default deny

    # the active policy decided every one of them
    assert (same["status"], diverged["status"], held["status"]) == ("allowed", "allowed", "pending_approval")
    assert diverged["decision"] == "allow" and diverged["rule_id"] == "rules[1]"
    assert (diverged["shadow_decision"], diverged["shadow_rule_id"]) == ("deny", "cap-50")
    assert diverged["shadow_policy_hash"] == candidate_hash != diverged["policy_hash"]
    assert same["shadow_decision"] == "allow" and other["shadow_decision"] == "deny"
    fetched = server.get(f"/v1/actions/{held['id']}", headers=auth(agent)).json()
    assert fetched["shadow_decision"] == "deny" and fetched["status"] == "pending_approval"

    info = server.get("/v1/policy", headers=auth(server.admin_key or "")).json()["shadow"]
    assert info["hash"] == candidate_hash and info["rejected"] == []
    assert info["stats"]["total"] == 4 and info["stats"]["diverged"] == 2
    assert {(p["active"], p["shadow"]): p["count"] for p in info["stats"]["pairs"]} == {
        ("allow", "allow"): 1,
        ("allow", "deny"): 1,
        ("require_approval", "deny"): 1,
        ("deny", "deny"): 1,
    }
    metrics = server.get("/metrics").text
    assert 'faramesh_shadow_decisions_total{active="allow",shadow="deny"} 1.0' in metrics
    assert 'faramesh_shadow_decisions_total{active="require_approval",shadow="deny"} 1.0' in metrics

    # the audit record of each submission says whether the two diverged
    store = Store(server.database_url)
    try:
        records = {r.action_id: r for r in store.read(lambda conn: audit.events_after(conn, 0, 10_000))}
    finally:
        store.close()
    assert records[diverged["id"]].data["shadow"] == {
        "decision": "deny",
        "rule_id": "cap-50",
        "policy_hash": candidate_hash,
        "diverged": True,
    }
    assert records[same["id"]].data["shadow"]["diverged"] is False


def test_shadow_is_shown_on_the_policy_page(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    shadow = tmp_path / "candidate.yaml"
    shadow.write_text(CANDIDATE)
    server = start_server(policy=SEED_POLICY, extra_args=("--shadow-policy", str(shadow)))
    assert "Shadow policy" in "".join(server.output)  # `faramesh serve` says so at start
    agent = server.create_key("agent")
    submit(server, agent, 80)
    submit(server, agent, 20)
    web = http_login(server, server.create_key("approver"))
    try:
        page = web.get("/policy")
    finally:
        web.close()
    assert page.status_code == 200
    assert "Shadow policy" in page.text
    assert 'id="shadow-total">2<' in page.text and 'id="shadow-diverged">1<' in page.text


def test_without_a_shadow_policy_actions_carry_no_shadow_fields(make_client: Callable[..., InProcessServer]) -> None:
    server = make_client()
    agent = server.create_key("agent")
    action = submit(server, agent, 20)
    assert "shadow_decision" not in action
    assert server.get("/v1/policy", headers=auth(server.admin_key or "")).json()["shadow"] is None


def test_the_shadow_file_is_reloaded_and_a_broken_one_keeps_the_last_good(
    tmp_path: Path, make_client: Callable[..., InProcessServer]
) -> None:
    server = start(tmp_path, make_client)
    agent = server.create_key("agent")
    shadow = tmp_path / "candidate.yaml"
    shadow.write_text("rules:\n  - match: {tool: refund}\n    require_approval: true\n    approval: {timeout: 1h}\n")
    poll(lambda: submit(server, agent, 20).get("shadow_decision") == "require_approval", timeout=15)
    good = Policy.from_file(shadow).hash
    shadow.write_text("rules:\n  - match: {tool: refund}\n    alow: true\n")
    poll(
        lambda: server.get("/v1/policy", headers=auth(server.admin_key or "")).json()["shadow"]["rejected"], timeout=15
    )
    info = server.get("/v1/policy", headers=auth(server.admin_key or "")).json()["shadow"]
    assert info["hash"] == good and "did you mean allow?" in info["rejected"][0]
    action = submit(server, agent, 20)
    assert action["shadow_decision"] == "require_approval" and action["shadow_policy_hash"] == good
    assert action["status"] == "allowed"  # the active policy still decides


def test_serve_refuses_a_broken_shadow_policy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - match: {tool: refund, amount_gtt: 1}\n    allow: true\n")
    out = subprocess.run(
        faramesh_cmd(
            "serve",
            "--port",
            "9",
            "--database-url",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--policy",
            str(SEED_POLICY),
            "--shadow-policy",
            str(bad),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "Cannot load the shadow policy" in out.stderr and "amount_gtt" in out.stderr

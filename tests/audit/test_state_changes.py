"""Every state change, made through the real server (and the CLI), appends its audit
record; refused changes append nothing; the result verifies."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from click.testing import CliRunner

from faramesh import audit
from faramesh.cli.main import main
from tests.conftest import ServerProcess, auth

POLICY = """
rules:
  - id: quick-payouts
    match: {tool: payout, operation: send}
    require_approval: true
    approval: {timeout: 1s}
    reason: Payouts need a quick approval
    risk: high
  - id: large-refunds
    match: {tool: refund, operation: process, amount_gt: 100}
    require_approval: true
    approval: {timeout: 1h}
    reason: Large refunds need approval
    risk: high
  - id: small-refunds
    match: {tool: refund, operation: process, amount_lte: 100}
    allow: true
    reason: Small refunds allowed
    risk: low
  - id: no-deletes
    match: {tool: user_management, operation: delete}
    deny: true
    reason: Agents may not delete users
    risk: critical
"""


class Api:
    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=10)

    def call(self, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, headers=auth(key), **kwargs)

    def submit(self, key: str, tool: str, operation: str, **params: Any) -> dict[str, Any]:
        r = self.call(
            "POST", "/v1/actions", key, json={"tool": tool, "operation": operation, "params": params, "reattach": False}
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    def trail(self, key: str, action_id: str) -> list[dict[str, Any]]:
        r = self.call("GET", f"/v1/actions/{action_id}/events", key)
        assert r.status_code == 200, r.text
        return list(r.json()["events"])


def head(server: ServerProcess) -> int:
    result = CliRunner().invoke(
        main, ["audit", "checkpoint", "--json"], env={"FARAMESH_DATABASE_URL": server.database_url}
    )
    assert result.exit_code == 0, result.output
    return int(orjson.loads(result.output)["seq"])


def records(server: ServerProcess, since: int = 0) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        main,
        ["audit", "export", "--since", str(since)],
        env={"FARAMESH_DATABASE_URL": server.database_url},
    )
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout_bytes.splitlines()]


def test_every_state_change_appends_its_record(start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    server = start_server(policy=policy_file)
    api = Api(server)
    admin = server.admin_key
    assert admin is not None
    # The first admin key was created by `serve` itself; its own actions carry its label.
    first_key = records(server)[0]
    assert (first_key["event"], first_key["actor"]) == ("key.created", "serve")
    admin_label = f"key:{first_key['data']['key_id']} (first admin)"

    # Keys created through the API carry the admin as actor.
    r = api.call("POST", "/v1/keys", admin, json={"role": "agent", "name": "bot", "agent_id": "billing-bot"})
    assert r.status_code == 201
    agent_id = r.json()["id"]
    agent = r.json()["key"]
    approver = server.create_key("approver", name="alice")
    temp = api.call("POST", "/v1/keys", admin, json={"role": "agent", "name": "temp"}).json()
    assert api.call("DELETE", f"/v1/keys/{temp['id']}", admin).status_code == 200
    keys_created = [r for r in records(server) if r["event"] == "key.created"]
    assert [k["data"]["name"] for k in keys_created] == ["first admin", "bot", "alice", "temp"]
    bot = keys_created[1]
    assert bot["actor"] == admin_label
    assert bot["data"] == {
        "key_id": agent_id,
        "name": "bot",
        "role": "agent",
        "agent_id": "billing-bot",
        "groups": [],
        "key_hash": hashlib.sha256(agent.encode()).hexdigest(),
    }
    revoked = [r for r in records(server) if r["event"] == "key.revoked"]
    assert [(r["data"]["key_id"], r["actor"]) for r in revoked] == [(temp["id"], admin_label)]

    # A key created with the CLI, on the same database, is recorded too.
    made = CliRunner().invoke(
        main, ["keys", "create", "--role", "approver", "--name", "bob", "--database-url", server.database_url]
    )
    assert made.exit_code == 0, made.output
    bob = made.output.strip().splitlines()[-1]
    cli_record = records(server)[-1]
    assert (cli_record["event"], cli_record["actor"], cli_record["data"]["name"]) == ("key.created", "cli", "bob")

    # Submissions: the record holds the decision, rule, reason, risk, policy and request hashes and status.
    before = head(server)
    allowed = api.submit(agent, "refund", "process", amount=40)
    denied = api.submit(agent, "user_management", "delete", user_id="u1")
    pending = api.submit(agent, "refund", "process", amount=500)
    rejected = api.submit(agent, "refund", "process", amount=600)
    payout = api.submit(agent, "payout", "send", amount=10)
    submitted = records(server, before)
    assert [r["event"] for r in submitted] == ["action.submitted"] * 5
    first = submitted[0]
    assert first["action_id"] == allowed["id"]
    # An allowed action's record names the permit issued with it (see docs/permits.md).
    permit = first["data"].pop("permit")
    assert permit["sha256"] == hashlib.sha256(allowed["permit"].encode()).hexdigest()
    assert all("permit" not in r["data"] for r in submitted[1:])
    assert first["data"] == {
        "status": "allowed",
        "decision": "allow",
        "rule_id": "small-refunds",
        "reason": "Small refunds allowed",
        "risk": "low",
        "policy_hash": allowed["policy_hash"],
        "request_hash": allowed["request_hash"],
        "tool": "refund",
        "operation": "process",
        "agent_id": "billing-bot",
    }
    assert [r["data"]["status"] for r in submitted] == [
        "allowed",
        "denied",
        "pending_approval",
        "pending_approval",
        "pending_approval",
    ]
    assert submitted[1]["data"]["rule_id"] == "no-deletes" and submitted[1]["data"]["risk"] == "critical"

    # Decisions record who and why; results record success, result or error.
    before = head(server)
    assert api.call("POST", f"/v1/actions/{pending['id']}/approve", approver, json={"reason": "ok"}).status_code == 200
    assert api.call("POST", f"/v1/actions/{rejected['id']}/deny", bob, json={"reason": "dup"}).status_code == 200
    ok = {"success": True, "result": {"refund_id": "re_1", "amount": 40.5}}
    assert api.call("POST", f"/v1/actions/{allowed['id']}/result", agent, json=ok).status_code == 200
    fail = {"success": False, "error": "card declined"}
    assert api.call("POST", f"/v1/actions/{pending['id']}/result", agent, json=fail).status_code == 200
    decided = records(server, before)
    assert [(r["event"], r["action_id"]) for r in decided] == [
        ("action.approved", pending["id"]),
        ("action.denied", rejected["id"]),
        ("action.succeeded", allowed["id"]),
        ("action.failed", pending["id"]),
    ]
    assert decided[0]["actor"].endswith("(alice)") and decided[0]["data"]["reason"] == "ok"
    assert decided[0]["data"]["status"] == "approved" and decided[0]["data"]["approve"] is True
    assert decided[1]["actor"].endswith("(bob)") and decided[1]["data"]["reason"] == "dup"
    assert decided[1]["data"]["status"] == "denied" and decided[1]["data"]["approve"] is False
    assert decided[2]["data"] == {
        "status": "succeeded",
        "success": True,
        "result": {"refund_id": "re_1", "amount": 40.5},
        "error": None,
    }
    assert decided[3]["data"] == {"status": "failed", "success": False, "result": None, "error": "card declined"}

    # Refused changes append nothing: a second approval, a result from another key, a decision on a final action.
    before = head(server)
    assert api.call("POST", f"/v1/actions/{pending['id']}/approve", approver, json={}).status_code == 409
    assert api.call("POST", f"/v1/actions/{payout['id']}/result", bob, json=ok).status_code in (403, 404)
    assert api.call("POST", f"/v1/actions/{denied['id']}/deny", approver, json={}).status_code == 409
    assert api.call("POST", f"/v1/actions/{allowed['id']}/result", agent, json=ok).status_code == 409
    assert head(server) == before

    # Expiry is recorded by the server's sweeper, as the system.
    deadline = time.monotonic() + 15
    while api.call("GET", f"/v1/actions/{payout['id']}", agent).json()["status"] != "denied":
        assert time.monotonic() < deadline, "the payout did not expire"
        time.sleep(0.1)
    expired = api.trail(approver, payout["id"])[-1]
    assert (expired["event"], expired["actor"], expired["data"]["status"]) == (
        "action.expired",
        "system:expiry",
        "denied",
    )
    assert "expired" in expired["data"]["reason"]

    # A policy reload is recorded with both hashes.
    old_hash = api.call("GET", "/v1/policy", admin).json()["hash"]
    policy_file.write_text(POLICY.replace("amount_gt: 100}", "amount_gt: 200}"))
    reloaded = api.call("POST", "/v1/policy/reload", admin)
    assert reloaded.status_code == 200, reloaded.text
    last = records(server)[-1]
    assert (last["event"], last["actor"]) == ("policy.reloaded", admin_label)
    assert last["data"]["old_hash"] == old_hash and last["data"]["new_hash"] == reloaded.json()["hash"]
    assert old_hash != reloaded.json()["hash"]

    # The action's trail from the API links up record by record.
    trail = api.trail(approver, pending["id"])
    assert [e["event"] for e in trail] == ["action.submitted", "action.approved", "action.failed"]
    for event in trail:
        body = audit.record_bytes(
            seq=event["seq"],
            ts=event["ts"],
            event=event["event"],
            action_id=event["action_id"],
            actor=event["actor"],
            data_json=audit.fast_canonical(event["data"]).decode(),
        )
        assert audit.chain_hash(event["prev_hash"], body) == event["hash"]

    # And the whole log verifies, with the server still running.
    result = CliRunner().invoke(main, ["audit", "verify"], env={"FARAMESH_DATABASE_URL": server.database_url})
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"audit log intact: {head(server)} records")

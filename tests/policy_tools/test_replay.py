"""`policy replay` on databases written by the app (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from faramesh.cli.main import main
from faramesh.policy import Policy
from faramesh.policy.tooling import ReplayReport, Since, parse_since, replay
from faramesh.storage.history_reads import HistoryError, RecordedAction, recorded_actions
from tests.conftest import auth, faramesh_cmd, fresh_database
from tests.inprocess import InProcessServer, inprocess_server

pytestmark = pytest.mark.backends("sqlite", "postgresql")

ACTIVE = """
default: deny
rules:
  - id: large-refunds
    match: {tool: refund, operation: process, amount_gt: 100}
    require_approval: true
    approval: {timeout: 1h}
  - id: small-refunds
    match: {tool: refund, operation: process, amount_lte: 100}
    allow: true
  - id: search
    match: {tool: search}
    allow: true
    rate_limit: {max: 1, per: 1h}
  - id: no-deletes
    match: {tool: user_management, operation: delete}
    deny: true
"""
# Lower approval threshold, finance agents may delete users, search keeps its limit.
CANDIDATE = """
default: deny
rules:
  - id: large-refunds
    match: {tool: refund, operation: process, amount_gt: 40}
    require_approval: true
    approval: {timeout: 1h}
  - id: small-refunds
    match: {tool: refund, operation: process, amount_lte: 40}
    allow: true
  - id: search
    match: {tool: search}
    allow: true
    rate_limit: {max: 1, per: 1h}
  - id: finance-deletes
    match: {tool: user_management, operation: delete, agent.groups_contains: finance}
    allow: true
  - id: no-deletes
    match: {tool: user_management, operation: delete}
    deny: true
"""


def submit(server: InProcessServer, key: str, tool: str, operation: str, **params: Any) -> dict[str, Any]:
    body = {"tool": tool, "operation": operation, "params": params, "reattach": False}
    r = server.post("/v1/actions", json=body, headers=auth(key))
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[dict[str, Any]]:
    """A database with recorded decisions of every kind, written by the app in-process (read-only here)."""
    tmp = tmp_path_factory.mktemp("replay")
    active = tmp / "active.yaml"
    active.write_text(ACTIVE)
    candidate = tmp / "candidate.yaml"
    candidate.write_text(CANDIDATE)
    with fresh_database(backend, tmp) as url:
        with inprocess_server(url, policy=active) as server:
            bot = server.create_key("agent", agent_id="bot")
            finance = server.create_key("agent", agent_id="finance-bot", groups=("finance",))
            actions = {
                "refund-50": submit(server, bot, "refund", "process", amount=50),
                "refund-20": submit(server, bot, "refund", "process", amount=20),
                "refund-500": submit(server, bot, "refund", "process", amount=500),
                "search-1": submit(server, bot, "search", "query", q="a"),
                "search-2": submit(server, bot, "search", "query", q="b"),  # denied by the rate limit
                "delete-bot": submit(server, bot, "user_management", "delete", user="u1"),
                "delete-finance": submit(server, finance, "user_management", "delete", user="u2"),
            }
        assert actions["search-2"]["status"] == "denied" and actions["search-2"]["reason"].startswith("Rate limit")
        yield {"url": url, "actions": actions, "candidate": candidate, "active": active}


def run_cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FARAMESH_DATABASE_URL": database_url}
    return subprocess.run(faramesh_cmd(*args), capture_output=True, text=True, env=env, timeout=120)


def test_replay_reports_exactly_the_changed_decisions(history: dict[str, Any]) -> None:
    out = run_cli("policy", "replay", str(history["candidate"]), "--json", database_url=history["url"])
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    ids = history["actions"]
    assert report["total"] == 7
    assert sorted(report["changed"], key=lambda c: c["id"]) == sorted(
        [
            {
                "id": ids["refund-50"]["id"],
                "tool": "refund",
                "operation": "process",
                "was": "allow",
                "now": "require_approval",
                "rule_id": "large-refunds",
            },
            {
                "id": ids["delete-finance"]["id"],
                "tool": "user_management",
                "operation": "delete",
                "was": "deny",
                "now": "allow",
                "rule_id": "finance-deletes",
            },
        ],
        key=lambda c: c["id"],
    )


def test_the_active_policy_replays_without_changes(history: dict[str, Any]) -> None:
    out = run_cli("policy", "replay", str(history["active"]), "--fail-on-change", database_url=history["url"])
    assert out.returncode == 0, out.stderr
    assert "Replayed 7 action(s)" in out.stdout and "No decision would change." in out.stdout


def test_fail_on_change_and_the_text_report(history: dict[str, Any]) -> None:
    result = CliRunner().invoke(
        main,
        ["policy", "replay", str(history["candidate"]), "--fail-on-change", "--database-url", history["url"]],
    )
    assert result.exit_code == 1
    assert "2 decision(s) would change" in result.output
    assert "allow → require_approval" in result.output and "deny → allow" in result.output


def replay_database(policy: Policy, url: str, since: Since) -> ReplayReport:
    """What `faramesh policy replay` does: read the recorded actions, replay them (no database)."""
    with recorded_actions(url, since_seq=since.seq, since_at=since.at) as records:
        return replay(policy, records, since)


def test_since_limits_the_replay(history: dict[str, Any]) -> None:
    policy = Policy.from_file(history["candidate"])
    everything = replay_database(policy, history["url"], parse_since("7d"))
    assert everything.total == 7 and len(everything.changed) == 2
    # from the sequence number of the last action on: only the finance delete
    last = max(everything.changed, key=lambda c: c.seq)
    tail = replay_database(policy, history["url"], parse_since(str(last.seq)))
    assert tail.total == 1 and [c.id for c in tail.changed] == [history["actions"]["delete-finance"]["id"]]
    assert replay_database(policy, history["url"], parse_since("2999-01-01")).total == 0
    out = run_cli("policy", "replay", str(history["candidate"]), "--since", "someday", database_url=history["url"])
    assert out.returncode == 2 and "--since" in out.stderr


def test_replay_refuses_a_missing_database(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no database"), recorded_actions(f"sqlite:///{tmp_path / 'nope.db'}"):
        pass
    assert not (tmp_path / "nope.db").exists()
    (tmp_path / "policy.yaml").write_text(ACTIVE)
    out = run_cli("policy", "replay", str(tmp_path / "policy.yaml"), database_url=f"sqlite:///{tmp_path / 'nope.db'}")
    assert out.returncode == 2 and "no database at" in out.stderr
    assert not (tmp_path / "nope.db").exists()


def test_the_replay_itself_needs_no_database() -> None:
    """The policy package re-decides plain records; only the CLI and storage read the database."""
    record = RecordedAction(
        seq=1,
        id="a1",
        tool="user_management",
        operation="delete",
        params={"user": "u2"},
        context={},
        agent_id="finance-bot",
        decision="deny",
        reason="denied",
        rule_id="no-deletes",
        created_at=1_700_000_000.0,
        role="agent",
        groups=("finance",),
    )
    report = replay(Policy.from_yaml(CANDIDATE), [record], parse_since("3"))
    assert report.total == 1 and [(c.id, c.was, c.now, c.rule_id) for c in report.changed] == [
        ("a1", "deny", "allow", "finance-deletes")
    ]
    assert "from sequence number 3" in report.render()
    with pytest.raises(TypeError, match="recorded_actions"):
        replay(Policy.from_yaml(ACTIVE), "sqlite:///faramesh.db")  # type: ignore[arg-type]


def test_the_policy_tools_load_no_database_code() -> None:
    code = (
        "import sys, faramesh.policy.tooling; "
        "print(sorted({m.split('.')[0] + '.' + m.split('.')[1] if m.startswith('faramesh.') else m.split('.')[0] "
        "for m in sys.modules if m.startswith(('sqlalchemy', 'faramesh.storage'))}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

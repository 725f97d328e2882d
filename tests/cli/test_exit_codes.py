"""Each kind of failure has its own exit code (faramesh.cli.exitcodes), as documented in docs/cli.md."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx

from faramesh.cli.exitcodes import ExitCode
from tests.conftest import ServerProcess, auth, faramesh_cmd

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def run(*args: str, url: str = "http://127.0.0.1:9", key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARAMESH_")}
    env["FARAMESH_URL"] = url
    if key is not None:
        env["FARAMESH_API_KEY"] = key
    return subprocess.run(faramesh_cmd(*args), env=env, capture_output=True, text=True, timeout=60)


def held_action(server: ServerProcess, agent: str) -> str:
    body = {"tool": "refund", "operation": "process", "params": {"amount": 500}, "context": {}}
    r = httpx.post(server.url + "/v1/actions", json=body, headers=auth(agent), timeout=10)
    assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
    return str(r.json()["id"])


def test_the_documented_table_is_the_enum() -> None:
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \|", DOC.read_text(), re.M)
    assert [(int(code), name) for code, name in rows] == [(c.value, c.name) for c in ExitCode]


def test_api_failures_exit_with_their_own_codes(server: ServerProcess) -> None:
    agent, approver = server.create_key("agent"), server.create_key("approver")
    action_id = held_action(server, agent)

    assert run("actions", "list").returncode == ExitCode.USAGE  # no API key
    missing = run("actions", "show", "no-such-action", url=server.url, key=approver)
    assert missing.returncode == ExitCode.NOT_FOUND and "HTTP 404" in missing.stderr
    bad_key = run("actions", "list", url=server.url, key="fm_not_a_key")
    assert bad_key.returncode == ExitCode.AUTH and "HTTP 401" in bad_key.stderr
    own_role = run("approve", action_id, url=server.url, key=agent)
    assert own_role.returncode == ExitCode.AUTH and "HTTP 403" in own_role.stderr

    first = run("approve", action_id, "--json", url=server.url, key=approver)
    assert first.returncode == ExitCode.OK, first.stderr
    assert json.loads(first.stdout)["status"] == "approved"
    second = run("deny", action_id, "--reason", "late", url=server.url, key=approver)
    assert second.returncode == ExitCode.CONFLICT and "approved" in second.stderr

    down = run("actions", "list", key=approver)  # nothing listens on port 9
    assert down.returncode == ExitCode.UNREACHABLE and "cannot reach" in down.stderr


def test_rate_limited_exits_7(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(extra_args=("--rate-limit", "2/m"))
    approver = server.create_key("approver")
    codes = [run("actions", "list", url=server.url, key=approver).returncode for _ in range(3)]
    assert codes == [ExitCode.OK, ExitCode.OK, ExitCode.RATE_LIMITED]


def test_keys_create_names_its_database_and_never_creates_one_unasked(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "faramesh.db"
    db.parent.mkdir()
    url = f"sqlite:///{db}"
    refused = run("keys", "create", "--role", "agent", "--database-url", url)
    assert refused.returncode == ExitCode.USAGE
    assert str(db) in refused.stderr and "--create-db" in refused.stderr
    assert not db.exists()

    created = run("keys", "create", "--role", "agent", "--database-url", url, "--create-db")
    assert created.returncode == ExitCode.OK, created.stderr
    assert f"Database: sqlite:///{db}" in created.stderr
    assert created.stdout.splitlines()[-1].startswith("fm_") and db.exists()
    # Relative URLs are shown resolved, so the one used is never a guess.
    again = subprocess.run(
        faramesh_cmd("keys", "create", "--role", "approver", "--database-url", "sqlite:///./faramesh.db"),
        cwd=db.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == ExitCode.OK and f"Database: sqlite:///{db}" in again.stderr
    listed = run("keys", "list", "--database-url", url)
    header = listed.stdout.splitlines()[0].split()
    assert header == ["ID", "ROLE", "STATE", "PREFIX", "AGENT", "GROUPS", "NAME"]
    assert len(listed.stdout.splitlines()) == 3
    unknown = run("keys", "revoke", "0123456789abcdef", "--database-url", url)
    assert unknown.returncode == ExitCode.NOT_FOUND


UNREACHABLE_PG = "postgresql://faramesh:hunter2@127.0.0.1:9/nothing"


def test_a_database_that_cannot_be_used_is_one_line_and_exit_2_never_a_traceback(tmp_path: Path) -> None:
    """An unsupported or malformed URL, a PostgreSQL server that is not there, a SQLite file
    that cannot be opened: each command that opens the database says so in a line (exit 2,
    'a database that cannot be used'), and creates nothing, keys included."""
    unopenable = f"sqlite:///{tmp_path / 'file' / 'under-a-file.db'}"
    (tmp_path / "file").write_text("not a directory")
    cases = [
        (("keys", "list", "--database-url", "bogus://x"), "unsupported database URL"),
        (("keys", "list", "--database-url", UNREACHABLE_PG), "cannot be used"),
        (("db", "upgrade", "--database-url", unopenable), "cannot be used"),
        (("serve", "--database-url", "bogus://x"), "unsupported database URL"),
        (("serve", "--database-url", UNREACHABLE_PG), "cannot be used"),
        (("serve", "--database-url", unopenable), "cannot be used"),
        (("audit", "verify", "--database-url", UNREACHABLE_PG), "cannot read the database"),
    ]
    for args, said in cases:
        result = run(*args)
        assert result.returncode == ExitCode.USAGE, (args, result.stdout, result.stderr)
        assert said in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "fm_" not in result.stdout, "no admin key was made"


def test_a_database_password_never_reaches_the_output() -> None:
    for args in (("keys", "list", "--database-url", UNREACHABLE_PG), ("serve", "--database-url", UNREACHABLE_PG)):
        result = run(*args)
        assert "hunter2" not in result.stdout + result.stderr
        assert "faramesh:***@127.0.0.1:9" in result.stderr


def test_shown_database_urls_hide_passwords_and_change_nothing_else() -> None:
    from faramesh.config import shown_database_url as shown

    assert shown("postgresql://u:secret@db:5432/f") == "postgresql://u:***@db:5432/f"
    assert shown("postgresql://db/f?sslmode=require&Password=x") == "postgresql://db/f?sslmode=require&Password=***"
    assert shown("postgresql://u:p%40ss@[::1]:5/f?application_name=a%20b") == (
        "postgresql://u:***@[::1]:5/f?application_name=a%20b"
    )
    for unchanged in ("sqlite:///./faramesh.db", "sqlite:////tmp/a b.db", "postgresql://u@db/f"):
        assert shown(unchanged) == unchanged
    assert "secret" not in shown("postgresql://u:secret@[::1")  # unparseable: shown as nothing

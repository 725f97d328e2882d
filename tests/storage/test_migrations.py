"""Upgrading a database written by the first release, on SQLite and on PostgreSQL.

`tests/fixtures/release1_rows.json` holds the rows the first release's server wrote
(schema revision 0001) when driven over HTTP with the seed policy: keys, actions in
every status, approvals and the audit chain. Each test loads them into a database at
revision 0001, upgrades it to the newest revision, and checks that the data, the
audit chain and the running server all carry on.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from faramesh.storage import migrate, normalize_url
from tests.conftest import FIXTURES, SEED_POLICY, ServerProcess, auth, faramesh_cmd, fresh_database

RELEASE1 = json.loads((FIXTURES / "release1_rows.json").read_text())
AUTOINCREMENT = {"actions": "seq", "approvals": "id", "limit_usage": "id"}


@pytest.fixture
def release1_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database at revision 0001 holding the first release's rows."""
    with fresh_database(backend, tmp_path, "release1") as url:
        engine = sa.create_engine(normalize_url(url))
        try:
            migrate.upgrade(engine, "0001")
            load_release1_rows(engine)
            assert migrate.current_revision(engine) == "0001"
        finally:
            engine.dispose()
        yield url


def load_release1_rows(engine: Engine) -> None:
    # The tables as revision 0001 made them, not as the code describes them today.
    tables = sa.MetaData()
    tables.reflect(engine, only=list(RELEASE1["tables"]))
    with engine.begin() as conn:
        conn.execute(tables.tables["audit_head"].delete())
        for name, rows in RELEASE1["tables"].items():
            if not rows:
                continue
            table = tables.tables[name]
            booleans = {c.name for c in table.columns if isinstance(c.type, sa.Boolean)}
            conn.execute(
                table.insert(),
                [{k: (bool(v) if k in booleans and v is not None else v) for k, v in row.items()} for row in rows],
            )
        if conn.dialect.name == "postgresql":
            # Rows were inserted with their ids: move the sequences past them, as use would have.
            for name, column in AUTOINCREMENT.items():
                conn.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', '{column}'), "
                        f"COALESCE((SELECT max({column}) FROM {name}), 0) + 1, false)"
                    )
                )


def table_rows(url: str, name: str, key: str) -> dict[Any, dict[str, Any]]:
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return {r._mapping[key]: dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {name}"))}
    finally:
        engine.dispose()


def test_upgrade_keeps_every_row_of_the_first_release(release1_url: str) -> None:
    engine = sa.create_engine(normalize_url(release1_url))
    try:
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()
    for name, key in (("actions", "id"), ("api_keys", "id"), ("audit_log", "seq"), ("approvals", "id")):
        now = table_rows(release1_url, name, key)
        assert set(now) == {row[key] for row in RELEASE1["tables"][name]}, name
        for old in RELEASE1["tables"][name]:
            for column, value in old.items():
                assert now[old[key]][column] == value or (
                    isinstance(value, int) and now[old[key]][column] is bool(value)
                ), f"{name}.{column} changed for {old[key]}"


def test_upgraded_audit_chain_still_verifies(release1_url: str) -> None:
    engine = sa.create_engine(normalize_url(release1_url))
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    done = subprocess.run(
        faramesh_cmd("audit", "verify", "--database-url", release1_url), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_server_migrates_on_start_and_serves_the_old_data(
    release1_url: str, start_server: Callable[..., ServerProcess]
) -> None:
    secrets, ids = RELEASE1["secrets"], RELEASE1["actions"]
    # --no-migrate refuses a database that is not at the newest revision...
    refused = subprocess.run(
        faramesh_cmd("serve", "--no-migrate", "--database-url", release1_url, "--policy", str(SEED_POLICY)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "faramesh db upgrade" in refused.stdout + refused.stderr
    # ...and a plain start upgrades it.
    server = start_server(database_url=release1_url)
    admin, agent, approver = secrets["admin"], secrets["agent"], secrets["approver"]
    statuses = {
        name: httpx.get(f"{server.url}/v1/actions/{action_id}", headers=auth(admin)).json()["status"]
        for name, action_id in ids.items()
    }
    assert statuses == {
        "succeeded": "succeeded",
        "approved": "approved",
        "denied": "denied",
        "blocked": "denied",
        "pending": "pending_approval",
    }
    # The old keys still work, and the old pending action can be decided and carried out.
    r = httpx.post(
        f"{server.url}/v1/actions/{ids['pending']}/approve", json={"reason": "after upgrade"}, headers=auth(approver)
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    r = httpx.post(f"{server.url}/v1/actions/{ids['pending']}/result", json={"success": True}, headers=auth(agent))
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    # New actions get fresh ids and sequence numbers after the old ones.
    new = httpx.post(
        server.url + "/v1/actions",
        json={"tool": "refund", "operation": "process", "params": {"amount": 10}, "context": {}},
        headers=auth(agent),
    )
    assert new.status_code == 201 and new.json()["status"] == "allowed", new.text
    listed = httpx.get(server.url + "/v1/actions", params={"limit": 1}, headers=auth(admin)).json()["actions"]
    assert listed[0]["id"] == new.json()["id"]
    server.stop()
    done = subprocess.run(
        faramesh_cmd("audit", "verify", "--database-url", release1_url), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_db_upgrade_command_brings_an_old_database_to_the_newest_revision(release1_url: str) -> None:
    done = subprocess.run(
        faramesh_cmd("db", "upgrade", "--database-url", release1_url), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert migrate.head_revision() in done.stdout
    engine = sa.create_engine(normalize_url(release1_url))
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()

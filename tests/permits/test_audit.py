"""`faramesh audit verify` checks permits and starts: a permit swapped or forged in the
row, a start record altered or removed, or an action moved to executing outside the
service is named. On SQLite and PostgreSQL, tampering with the database directly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from faramesh.storage import normalize_url
from tests.inprocess import InProcessServer
from tests.permits.support import LARGE, SMALL, audit_verify, keys, post, submit

pytestmark = pytest.mark.backends("sqlite", "postgresql")


@pytest.fixture
def history(make_client: Any) -> Iterator[tuple[InProcessServer, dict[str, str], Engine]]:
    """Allowed, approved, started, renewed and reconciled actions; then the app is done with."""
    app: InProcessServer = make_client()
    k = keys(app)
    ids = {}
    ids["allowed"] = submit(app, k["agent"], SMALL)["id"]
    ids["other"] = submit(app, k["agent"], SMALL | {"params": {"amount": 99}})["id"]
    held = submit(app, k["agent"], LARGE)["id"]
    post(app, f"/v1/actions/{held}/approve", k["approver"], {"reason": "ok"})
    ids["approved"] = held
    ids["started"] = submit(app, k["agent"], SMALL | {"params": {"amount": 7}})["id"]
    post(app, f"/v1/actions/{ids['started']}/start", k["agent"])
    ids["unknown"] = submit(app, k["agent"], SMALL | {"params": {"amount": 8}})["id"]
    post(app, f"/v1/actions/{ids['unknown']}/start", k["agent"])
    app.advance(601)
    post(app, f"/v1/actions/{ids['unknown']}/reconcile", k["approver"], {"outcome": "failed", "reason": "checked"})
    app.get(f"/v1/actions/{ids['allowed']}", headers={"Authorization": f"Bearer {k['agent']}"})  # a renewal
    engine = create_engine(normalize_url(app.database_url))
    code, output = audit_verify(app.database_url)
    assert code == 0, output
    yield app, ids, engine
    engine.dispose()


def sql(engine: Engine, statement: str, **params: Any) -> list[Any]:
    with engine.begin() as conn:
        result = conn.execute(text(statement), params)
        return list(result.all()) if result.returns_rows else []


def problems(app: InProcessServer) -> list[str]:
    code, output = audit_verify(app.database_url)
    assert code == 1, output
    return output.splitlines()


def test_a_permit_swapped_from_another_action_is_named(history: tuple[InProcessServer, dict[str, str], Engine]) -> None:
    app, ids, engine = history
    [(permit,)] = sql(engine, "SELECT permit FROM actions WHERE id = :i", i=ids["other"])
    sql(engine, "UPDATE actions SET permit = :p WHERE id = :i", p=permit, i=ids["allowed"])
    lines = problems(app)
    assert any(
        ids["allowed"] in line and "is not the one its action.permit_renewed record issued" in line for line in lines
    ), lines


def test_a_permit_removed_from_an_approved_action_is_named(
    history: tuple[InProcessServer, dict[str, str], Engine],
) -> None:
    app, ids, engine = history
    sql(engine, "UPDATE actions SET permit = NULL WHERE id = :i", i=ids["approved"])
    lines = problems(app)
    assert any(ids["approved"] in line and "issued a permit but the row carries none" in line for line in lines), lines


def test_a_permit_on_an_action_no_record_issued_one_to_is_named(
    history: tuple[InProcessServer, dict[str, str], Engine],
) -> None:
    app, ids, engine = history
    denied = submit(app, keys(app)["agent"], {"tool": "user_management", "operation": "delete", "params": {}})["id"]
    [(permit,)] = sql(engine, "SELECT permit FROM actions WHERE id = :i", i=ids["other"])
    sql(engine, "UPDATE actions SET permit = :p WHERE id = :i", p=permit, i=denied)
    lines = problems(app)
    assert any(denied in line and "no audit record issued" in line for line in lines), lines


def test_an_altered_start_record_is_named(history: tuple[InProcessServer, dict[str, str], Engine]) -> None:
    app, ids, engine = history
    [(seq, data)] = sql(
        engine, "SELECT seq, data FROM audit_log WHERE event = 'action.started' AND action_id = :i", i=ids["started"]
    )
    forged = json.loads(data) | {"lease_expires_at": 9_999_999_999}
    sql(engine, "UPDATE audit_log SET data = :d WHERE seq = :s", d=json.dumps(forged), s=seq)
    lines = problems(app)
    assert f"audit chain broken at seq {seq} (action {ids['started']}): hash mismatch — record was altered" in lines


def test_a_start_made_outside_the_service_is_named(history: tuple[InProcessServer, dict[str, str], Engine]) -> None:
    app, ids, engine = history
    # Someone marks an allowed action executing in the database, with no action.started record.
    sql(engine, "UPDATE actions SET status = 'executing' WHERE id = :i", i=ids["other"])
    lines = problems(app)
    assert any(
        ids["other"] in line
        and "status is 'executing' in the row but its last record (action.submitted) says 'allowed'" in line
        for line in lines
    ), lines

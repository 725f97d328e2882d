"""The sweeper's deadline indexes are partial (rows with the deadline only), and the
sweeper's questions use them, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from faramesh.storage import actions_repo, migrate, normalize_url
from tests.conftest import fresh_database

# index -> the sweeper's questions that must be answered through it
QUESTIONS: dict[str, list[Callable[[Any], Any]]] = {
    "ix_actions_pending_expiry": [
        lambda conn: actions_repo.next_due(conn, "pending_approval", 100.0),
        lambda conn: actions_repo.earliest_expiry(conn, "pending_approval"),
    ],
    "ix_actions_lapse": [
        lambda conn: actions_repo.next_lapsed(conn, "approved", 100.0),
        lambda conn: actions_repo.earliest_lapse(conn, "approved"),
    ],
    "ix_actions_lease": [
        lambda conn: actions_repo.next_lease_due(conn, "executing", 100.0),
        lambda conn: actions_repo.earliest_lease(conn, "executing"),
    ],
}


@pytest.fixture(scope="module")
def engine(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    with fresh_database(backend, tmp_path_factory.mktemp("deadlines")) as url:
        engine = sa.create_engine(normalize_url(url))
        migrate.upgrade(engine)
        try:
            yield engine
        finally:
            engine.dispose()


def _definitions(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
        else:
            rows = conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'actions'")
        return {name: sql or "" for name, sql in rows}


@pytest.mark.parametrize("index", list(QUESTIONS))
def test_a_deadline_index_holds_only_rows_with_the_deadline(engine: sa.Engine, index: str) -> None:
    definition = _definitions(engine)[index]
    assert "WHERE" in definition.upper() and "IS NOT NULL" in definition.upper(), definition


@pytest.mark.parametrize("index", list(QUESTIONS))
def test_the_sweepers_questions_use_the_partial_index(engine: sa.Engine, index: str) -> None:
    for ask in QUESTIONS[index]:
        statements: list[tuple[str, Any]] = []

        def capture(
            _conn: Any,
            _cursor: Any,
            statement: str,
            parameters: Any,
            _ctx: Any,
            _many: bool,
            seen: list[tuple[str, Any]] = statements,
        ) -> None:
            seen.append((statement, parameters))

        with engine.connect() as conn:
            event.listen(conn, "before_cursor_execute", capture)
            with conn.begin():
                ask(conn)
            event.remove(conn, "before_cursor_execute", capture)
            (statement, parameters), *_ = statements
            if engine.dialect.name == "sqlite":
                plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
            else:
                with conn.begin():
                    # An empty table is cheapest to scan: ask whether the index CAN answer.
                    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                    plan = " ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
        assert index in plan, f"{statement}\n{plan}"

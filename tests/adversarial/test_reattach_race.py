"""A retry that re-attaches while another writer changes the held action (a pick-up, a vote,
another replica) still re-attaches: it never becomes a second action because of the race.

PostgreSQL makes the race exact: a second connection holds the row lock of the held action
with its version bumped; the retry's compare-and-set waits on that lock, finds the version
changed once it is released, and must look the action up again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.conftest import SEED_POLICY
from tests.inprocess import InProcessServer, auth, poll

pytestmark = pytest.mark.backends("postgresql")

REFUND = {"tool": "refund", "operation": "process", "params": {"amount": 500}, "context": {"agent_id": "race-bot"}}


def _lock_waiters(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    return int(row[0]) if row else 0


def test_retry_reattaches_although_the_row_changed_under_it(make_client: Callable[..., InProcessServer]) -> None:
    app = make_client(policy=SEED_POLICY)
    key = app.create_key("agent")
    first = app.post("/v1/actions", json=REFUND, headers=auth(key))
    assert first.status_code == 201 and first.json()["status"] == "pending_approval"
    held = first.json()["id"]

    retried: dict[str, Any] = {}
    with psycopg.connect(app.database_url.replace("postgresql+psycopg://", "postgresql://")) as other:
        watcher = psycopg.connect(app.database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        # Another writer changes the held row and keeps its lock for now.
        other.execute("UPDATE actions SET version = version + 1 WHERE id = %s", (held,))

        def retry() -> None:
            retried["response"] = app.post("/v1/actions", json=REFUND, headers=auth(key))

        thread = threading.Thread(target=retry, daemon=True)
        thread.start()
        poll(lambda: _lock_waiters(watcher) >= 1, timeout=30)  # the retry's attach waits on the lock
        other.commit()
        thread.join(timeout=30)
        watcher.close()

    response = retried["response"]
    assert response.status_code == 200, response.text
    assert response.json()["id"] == held and response.json()["reattached"] is True
    listed = app.get("/v1/actions", params={"agent_id": "race-bot"}, headers=auth(key)).json()["actions"]
    assert [a["id"] for a in listed] == [held]

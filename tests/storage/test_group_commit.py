"""The SQLite writer's group commit: writes waiting together share one transaction and
one fsync, yet each succeeds or fails on its own.

The writer is held busy by a first job so that the next ones queue up and are run as one
batch; one of them fails after it has written. Its rows must be gone, the others' must be
committed, and every caller must get its own answer.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from faramesh.storage import DuplicateRow, Store, actions_repo
from faramesh.storage.actions_repo import Connection
from tests.conftest import fresh_database


def _values(action_id: str, **extra: Any) -> dict[str, Any]:
    now = time.time()
    return {
        "id": action_id,
        "status": "allowed",
        "decision": "allow",
        "reason": "test",
        "risk_level": "low",
        "policy_hash": "p" * 64,
        "request_hash": "r" * 64,
        "submitted_hash": "r" * 64,
        "tool": "t",
        "operation": "o",
        "params": "{}",
        "context": "{}",
        "agent_id": "a",
        "submitted_by": "k",
        "created_at": now,
        "updated_at": now,
    } | extra


class Boom(Exception):
    pass


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Any:
    with fresh_database(backend, tmp_path) as url:
        s = Store(url)
        s.upgrade()
        try:
            yield s
        finally:
            s.close()


@pytest.mark.backends("sqlite")
def test_a_failing_write_in_a_batch_leaves_the_others_committed(store: Store) -> None:
    gate, started = threading.Event(), threading.Event()

    def hold(conn: Connection) -> str:
        started.set()
        gate.wait(10)
        return "held"

    def good(action_id: str) -> Any:
        def write(conn: Connection) -> str:
            actions_repo.insert(conn, _values(action_id))
            return action_id

        return write

    def bad(action_id: str) -> Any:
        def write(conn: Connection) -> str:
            actions_repo.insert(conn, _values(action_id))  # written, then the job fails
            raise Boom(action_id)

        return write

    ids = [str(uuid.uuid4()) for _ in range(5)]
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(store.write, hold)
        assert started.wait(10)
        futures: list[Future[str]] = []
        for n, action_id in enumerate(ids):
            futures.append(pool.submit(store.write, bad(action_id) if n == 2 else good(action_id)))
        deadline = time.monotonic() + 10
        while store._queue.qsize() < len(ids):  # all five queued behind the held job: one batch
            assert time.monotonic() < deadline, "the writes never queued"
            time.sleep(0.005)
        gate.set()
        assert first.result(10) == "held"
        answers: list[Any] = []
        for f in futures:
            try:
                answers.append(f.result(10))
            except Boom as exc:
                answers.append(exc)
    assert [a if isinstance(a, str) else "boom" for a in answers] == [ids[0], ids[1], "boom", ids[3], ids[4]]
    stored = {a for a in ids if store.read(lambda conn, a=a: actions_repo.get(conn, a)) is not None}
    assert stored == {ids[0], ids[1], ids[3], ids[4]}


def test_a_duplicate_idempotency_key_is_refused_as_a_duplicate_row(store: Store) -> None:
    """The action insert runs on the driver's cursor; its constraint error still arrives
    as the storage layer's DuplicateRow, and the failed write leaves nothing behind."""
    store.write(lambda conn: actions_repo.insert(conn, _values("a1", idempotency_key="same")))
    with pytest.raises(DuplicateRow):
        store.write(lambda conn: actions_repo.insert(conn, _values("a2", idempotency_key="same")))
    assert store.read(lambda conn: actions_repo.get(conn, "a2")) is None
    # The writer (SQLite) or the pool (PostgreSQL) goes on working after the refusal.
    store.write(lambda conn: actions_repo.insert(conn, _values("a3", idempotency_key="other")))
    found = store.read(lambda conn: actions_repo.get(conn, "a3"))
    assert found is not None and found.idempotency_key == "other"
    # Columns left out take their schema defaults, as through SQLAlchemy's own insert.
    assert (found.version, found.approval_quorum) == (1, 1)

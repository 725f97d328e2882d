"""The AuditLog contract (append, head, reads), on SQLite, PostgreSQL and memory alike."""

from __future__ import annotations

import pytest

from faramesh.storage import DuplicateRow
from faramesh.storage.repositories import Repositories
from faramesh.storage.schema import GENESIS_HASH
from tests.storage.contract import RepoBackend, record


def _append(repos: Repositories, **columns: object) -> int:
    """Append one record after the locked head, as faramesh.audit.chain does."""
    seq, head = repos.audit.lock_head()
    row = record(seq + 1, head, **columns)
    repos.audit.write_record(row)
    return seq + 1


def test_an_empty_log_starts_at_the_genesis_hash(db: RepoBackend) -> None:
    with db.transaction() as repos:
        assert repos.audit.read_head() == (0, GENESIS_HASH)
        assert repos.audit.lock_head() == (0, GENESIS_HASH)
        assert repos.audit.records_after(0, 10) == []
        assert list(repos.audit.stream_records()) == []


def test_each_append_advances_the_head(db: RepoBackend) -> None:
    with db.transaction() as repos:
        assert _append(repos) == 1
        assert repos.audit.read_head() == (1, f"{1:064x}")
        assert _append(repos) == 2
    with db.transaction() as repos:
        assert repos.audit.read_head() == (2, f"{2:064x}")
        assert repos.audit.lock_head() == (2, f"{2:064x}")
        second = repos.audit.record_at(2)
        assert second is not None and second.prev_hash == f"{1:064x}"


def test_a_record_reads_back_by_seq_by_action_and_by_hash(db: RepoBackend) -> None:
    with db.transaction() as repos:
        _append(repos, action_id="a1", event="action.submitted", actor="key-1", data='{"x":1}')
        _append(repos, action_id=None, event="key.created", actor=None)
        _append(repos, action_id="a1", event="action.approved", actor="person:ann")
        _append(repos, action_id="a2")
    with db.transaction() as repos:
        first = repos.audit.record_at(1)
        assert first is not None
        assert (first.seq, first.ts, first.event, first.action_id, first.actor, first.data) == (
            1,
            1001.0,
            "action.submitted",
            "a1",
            "key-1",
            '{"x":1}',
        )
        assert (first.prev_hash, first.hash) == (GENESIS_HASH, f"{1:064x}")
        assert repos.audit.record_at(9) is None
        assert repos.audit.record_ts(2) == 1002.0
        assert repos.audit.record_ts(9) is None
        assert [row.seq for row in repos.audit.action_records("a1")] == [1, 3]
        assert repos.audit.action_records("a9") == []
        assert [row.seq for row in repos.audit.records_after(1, 2)] == [2, 3]
        assert [row.seq for row in repos.audit.records_after(3, 10)] == [4]
        assert repos.audit.seq_of_hash(f"{3:064x}") == 3
        assert repos.audit.seq_of_hash("f" * 64) is None


def test_stream_records_yields_chain_tuples_in_order(db: RepoBackend) -> None:
    with db.transaction() as repos:
        for action_id in ("a1", "a2", "a1", None):
            _append(repos, action_id=action_id)
    with db.transaction() as repos:
        rows = list(repos.audit.stream_records())
        assert [row[0] for row in rows] == [1, 2, 3, 4]
        assert rows[0] == (1, 1001.0, "action.submitted", "a1", "key-1", "{}", GENESIS_HASH, f"{1:064x}")
        assert [row[0] for row in repos.audit.stream_records(since_seq=2)] == [3, 4]
        assert [row[0] for row in repos.audit.stream_records(since_ts=1002.0)] == [2, 3, 4]
        assert [row[0] for row in repos.audit.stream_records(action_id="a1")] == [1, 3]
        assert [row[0] for row in repos.audit.stream_records(since_seq=1, action_id="a1")] == [3]


def test_a_seq_is_written_once(db: RepoBackend) -> None:
    with db.transaction() as repos:
        _append(repos)
    with pytest.raises(DuplicateRow), db.transaction() as repos:
        repos.audit.write_record(record(1, GENESIS_HASH, hash="e" * 64))
    with db.transaction() as repos:
        assert repos.audit.read_head() == (1, f"{1:064x}")
        assert repos.audit.record_at(1).hash == f"{1:064x}"


def test_a_failed_transaction_leaves_the_head_where_it_was(db: RepoBackend) -> None:
    with db.transaction() as repos:
        _append(repos)
    with pytest.raises(RuntimeError), db.transaction() as repos:
        _append(repos)
        _append(repos)
        raise RuntimeError("abort")
    with db.transaction() as repos:
        assert repos.audit.read_head() == (1, f"{1:064x}")
        assert repos.audit.records_after(0, 10)[-1].seq == 1
        assert _append(repos) == 2

"""The KeyStore and LimitStore contracts, on SQLite, PostgreSQL and memory alike."""

from __future__ import annotations

import pytest

from faramesh.storage import DuplicateRow
from tests.storage.contract import RepoBackend, key


# -- keys ------------------------------------------------------------------------------------
def test_a_key_reads_back_by_id_and_by_hash(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.keys.insert(**key("k1", role="approver", agent_id=None, groups_json='["ops"]', created_at=1000))
    with db.transaction() as repos:
        row = repos.keys.get("k1")
        assert row is not None
        assert (row.id, row.name, row.role, row.groups, row.key_hash, row.prefix) == (
            "k1",
            "key k1",
            "approver",
            '["ops"]',
            "hash-k1",
            "fm_k1",
        )
        assert row.agent_id is None and row.revoked_at is None
        assert row.created_at == 1000.0 and isinstance(row.created_at, float)
        assert repos.keys.by_hash("hash-k1") == row
        assert repos.keys.get_active("k1") == row
        assert repos.keys.is_active("k1")
        assert repos.keys.get("k2") is None and repos.keys.by_hash("hash-k2") is None


def test_key_ids_and_hashes_are_unique(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.keys.insert(**key("k1"))
    with pytest.raises(DuplicateRow), db.transaction() as repos:
        repos.keys.insert(**key("k1", key_hash="another-hash"))
    with pytest.raises(DuplicateRow), db.transaction() as repos:
        repos.keys.insert(**key("k2"))
        repos.keys.insert(**key("k3", key_hash="hash-k1"))
    with db.transaction() as repos:
        assert [row.id for row in repos.keys.list_all()] == ["k1"]


def test_a_revoked_key_is_not_active_anywhere(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.keys.insert(**key("k1"))
        repos.keys.insert(**key("k2"))
        assert repos.keys.revoke("k1", 2000.0) is True
        assert repos.keys.revoke("k1", 3000.0) is False  # already revoked: the first time stays
        assert repos.keys.revoke("missing", 2000.0) is False
    with db.transaction() as repos:
        assert repos.keys.get_active("k1") is None
        assert not repos.keys.is_active("k1")
        assert repos.keys.get("k1").revoked_at == 2000.0
        # Looked up by its hash, a revoked key still reads back, marked revoked: callers refuse it.
        by_hash = repos.keys.by_hash("hash-k1")
        assert by_hash is not None and by_hash.revoked_at == 2000.0
        assert repos.keys.count_active() == 1
        assert repos.keys.active_among({"k1", "k2", "missing"}) == {"k2"}
        assert not repos.keys.is_active("missing")


def test_keys_list_oldest_first_and_count_by_role(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.keys.insert(**key("b", role="admin", created_at=1002.0))
        repos.keys.insert(**key("a", role="agent", created_at=1003.0))
        repos.keys.insert(**key("c", role="admin", created_at=1001.0))
        repos.keys.revoke("a", 2000.0)
        assert [row.id for row in repos.keys.list_all()] == ["c", "b", "a"]
        assert repos.keys.count_active() == 2
        assert repos.keys.count_active("admin") == 2
        assert repos.keys.count_active("agent") == 0
        assert repos.keys.count_active("approver") == 0


def test_active_among_answers_for_many_ids(db: RepoBackend) -> None:
    with db.transaction() as repos:
        for i in range(520):
            repos.keys.insert(**key(f"k{i:04d}"))
        repos.keys.revoke("k0007", 2000.0)
        repos.keys.revoke("k0511", 2000.0)
        wanted = {f"k{i:04d}" for i in range(530)}
        assert repos.keys.active_among(wanted) == {f"k{i:04d}" for i in range(520)} - {"k0007", "k0511"}
        assert repos.keys.active_among(set()) == set()


# -- limits ----------------------------------------------------------------------------------
def test_usage_counts_and_sums_the_limit_in_its_buckets_after_since(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.limits.lock_buckets(["spend:agent-1", "spend:agent-2"])
        assert repos.limits.usage(limit_id="spend", buckets=["agent-1"], since=0.0) == (0, 0.0)
        repos.limits.record(limit_id="spend", bucket="agent-1", amount=5.0, action_id="a1", at=1000.0)
        repos.limits.record(limit_id="spend", bucket="agent-1", amount=2.5, action_id="a2", at=1010.0)
        repos.limits.record(limit_id="spend", bucket="agent-2", amount=100.0, action_id="a3", at=1010.0)
        repos.limits.record(limit_id="calls", bucket="agent-1", amount=1.0, action_id="a4", at=1010.0)
        assert repos.limits.usage(limit_id="spend", buckets=["agent-1"], since=0.0) == (2, 7.5)
        assert repos.limits.usage(limit_id="spend", buckets=["agent-1", "agent-2"], since=0.0) == (3, 107.5)
        # `since` is exclusive: a use at exactly that time no longer counts.
        assert repos.limits.usage(limit_id="spend", buckets=["agent-1"], since=1000.0) == (1, 2.5)
        assert repos.limits.usage(limit_id="calls", buckets=["agent-1"], since=0.0) == (1, 1.0)
        assert repos.limits.usage(limit_id="spend", buckets=["agent-9"], since=0.0) == (0, 0.0)


def test_release_forgets_only_that_actions_usage(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.limits.record(limit_id="spend", bucket="b", amount=5.0, action_id="a1", at=1000.0)
        repos.limits.record(limit_id="calls", bucket="b", amount=1.0, action_id="a1", at=1000.0)
        repos.limits.record(limit_id="spend", bucket="b", amount=3.0, action_id="a2", at=1000.0)
        repos.limits.release("a1")
        repos.limits.release("missing")
        assert repos.limits.usage(limit_id="spend", buckets=["b"], since=0.0) == (1, 3.0)
        assert repos.limits.usage(limit_id="calls", buckets=["b"], since=0.0) == (0, 0.0)


def test_usage_recorded_in_a_failed_transaction_does_not_count(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.limits.record(limit_id="spend", bucket="b", amount=1.0, action_id="a1", at=1000.0)
    with pytest.raises(RuntimeError), db.transaction() as repos:
        repos.limits.record(limit_id="spend", bucket="b", amount=50.0, action_id="a2", at=1000.0)
        raise RuntimeError("abort")
    with db.transaction() as repos:
        assert repos.limits.usage(limit_id="spend", buckets=["b"], since=0.0) == (1, 1.0)

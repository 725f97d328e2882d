"""The ActionStore contract, on SQLite, PostgreSQL and memory alike."""

from __future__ import annotations

import pytest

from faramesh.model import Action
from faramesh.storage import DuplicateRow
from faramesh.storage.rows import ActionFilter
from tests.storage.contract import RepoBackend, action


def _ids(rows: list[Action]) -> list[str]:
    return [row.id for row in rows]


# -- insert, get, uniqueness ---------------------------------------------------------------
def test_an_inserted_action_reads_back_with_its_columns_and_the_defaults(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("a1", created_at=1000, idempotency_key=None))
    with db.transaction() as repos:
        row = repos.actions.get("a1")
        assert isinstance(row, Action)
        assert (row.id, row.status, row.tool, row.agent_id, row.params) == (
            "a1",
            "pending_approval",
            "shell",
            "agent-1",
            '{"cmd":"ls"}',
        )
        assert (row.version, row.approval_quorum) == (1, 1)
        assert row.created_at == 1000.0 and isinstance(row.created_at, float)
        assert row.expires_at is None and row.permit is None and row.idempotency_key is None
        assert isinstance(row.seq, int)
        assert repos.actions.current_status("a1") == "pending_approval"
        assert repos.actions.get_for_update("a1") == row


def test_an_unknown_action_is_none(db: RepoBackend) -> None:
    with db.transaction() as repos:
        assert repos.actions.get("nope") is None
        assert repos.actions.get_for_update("nope") is None
        assert repos.actions.current_status("nope") is None


def test_actions_get_increasing_seqs(db: RepoBackend) -> None:
    with db.transaction() as repos:
        for i in range(3):
            repos.actions.insert(action(f"a{i}"))
        seqs = [repos.actions.get(f"a{i}").seq for i in range(3)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


def test_a_duplicate_id_raises_duplicate_row_and_its_transaction_leaves_nothing(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("a1"))
    with pytest.raises(DuplicateRow), db.transaction() as repos:
        repos.actions.insert(action("a2"))
        repos.actions.insert(action("a1", tool="other"))
    with db.transaction() as repos:
        assert repos.actions.get("a2") is None
        assert repos.actions.get("a1").tool == "shell"


def test_one_idempotency_key_per_submitter(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("a1", submitted_by="key-1", idempotency_key="k"))
        repos.actions.insert(action("a2", submitted_by="key-2", idempotency_key="k"))
        # Without a key, a submitter may insert any number of actions.
        repos.actions.insert(action("a3", submitted_by="key-1", idempotency_key=None))
        repos.actions.insert(action("a4", submitted_by="key-1", idempotency_key=None))
    with pytest.raises(DuplicateRow), db.transaction() as repos:
        repos.actions.insert(action("a5", submitted_by="key-1", idempotency_key="k"))
    with db.transaction() as repos:
        assert repos.actions.find_idempotent("key-1", "k").id == "a1"
        assert repos.actions.find_idempotent("key-2", "k").id == "a2"
        assert repos.actions.find_idempotent("key-3", "k") is None
        assert repos.actions.find_idempotent("key-1", "other") is None
        assert repos.actions.get("a5") is None


def test_a_missing_required_column_is_refused(db: RepoBackend) -> None:
    values = action("a1")
    del values["tool"]
    with pytest.raises(DuplicateRow), db.transaction() as repos:
        repos.actions.insert(values)
    with db.transaction() as repos:
        assert repos.actions.get("a1") is None


# -- compare-and-set -----------------------------------------------------------------------
def test_compare_and_set_has_one_winner_per_version(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("a1"))
    with db.transaction() as repos:
        seen = repos.actions.get("a1")
        assert seen is not None and seen.version == 1
        first = repos.actions.compare_and_set(
            "a1", statuses=["pending_approval"], version=seen.version, values={"status": "approved", "version": 2}
        )
        second = repos.actions.compare_and_set(
            "a1", statuses=["pending_approval"], version=seen.version, values={"status": "denied", "version": 2}
        )
        assert (first, second) == (True, False)
    with db.transaction() as repos:
        row = repos.actions.get("a1")
        assert row is not None and (row.status, row.version) == ("approved", 2)


def test_compare_and_set_checks_the_status_and_the_version(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("a1"))
        cas = repos.actions.compare_and_set
        assert not cas("a1", statuses=["approved", "allowed"], version=1, values={"reason": "wrong status"})
        assert not cas("a1", statuses=["pending_approval"], version=2, values={"reason": "wrong version"})
        assert not cas("missing", statuses=["pending_approval"], version=1, values={"reason": "no row"})
        assert repos.actions.get("a1").reason == "needs a person"
        # Any of the named statuses will do.
        assert cas("a1", statuses=["approved", "pending_approval"], version=1, values={"reason": "ok"})
        assert repos.actions.get("a1").reason == "ok"


def test_compare_and_set_writes_exactly_the_values_given(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("a1"))
        assert repos.actions.compare_and_set(
            "a1", statuses=["pending_approval"], version=1, values={"decided_by": "key-9", "expires_at": 5}
        )
        row = repos.actions.get("a1")
    assert row is not None
    # No version bump of its own: the caller sets the version it means.
    assert (row.version, row.status, row.decided_by, row.expires_at) == (1, "pending_approval", "key-9", 5.0)


def test_compare_and_set_keeps_the_idempotency_key_unique(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("a1", idempotency_key="k"))
        repos.actions.insert(action("a2", idempotency_key=None))
    with pytest.raises(DuplicateRow), db.transaction() as repos:
        repos.actions.compare_and_set("a2", statuses=["pending_approval"], version=1, values={"idempotency_key": "k"})
    with db.transaction() as repos:
        assert repos.actions.get("a2").idempotency_key is None


def test_touching_presence_does_not_race_a_decision(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("a1"))
        repos.actions.touch_presence("a1", 1234.5)
        repos.actions.touch_presence("missing", 1234.5)
        row = repos.actions.get("a1")
        assert row is not None and (row.agent_seen_at, row.version) == (1234.5, 1)
        assert repos.actions.compare_and_set("a1", statuses=["pending_approval"], version=1, values={"version": 2})


def test_a_transaction_that_raises_undoes_its_inserts_and_updates(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("a1"))
    with pytest.raises(RuntimeError), db.transaction() as repos:
        repos.actions.insert(action("a2"))
        repos.actions.compare_and_set("a1", statuses=["pending_approval"], version=1, values={"status": "denied"})
        raise RuntimeError("abort")
    with db.transaction() as repos:
        assert repos.actions.get("a2") is None
        assert repos.actions.current_status("a1") == "pending_approval"


# -- re-attach lookups ------------------------------------------------------------------------
def test_find_reattachable_takes_the_newest_match_in_the_statuses(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("old", submitted_hash="h1", status="pending_approval"))
        repos.actions.insert(action("new", submitted_hash="h1", status="approved"))
        repos.actions.insert(action("done", submitted_hash="h1", status="succeeded"))
        repos.actions.insert(action("other-agent", submitted_hash="h1", agent_id="agent-2"))
        repos.actions.insert(action("other-hash", submitted_hash="h2"))
        find = repos.actions.find_reattachable
        assert find("agent-1", "h1", ["pending_approval", "approved"]).id == "new"
        assert find("agent-1", "h1", ["pending_approval"]).id == "old"
        assert find("agent-2", "h1", ["pending_approval"]).id == "other-agent"
        assert find("agent-1", "h1", ["denied"]) is None
        assert find("agent-1", "h3", ["pending_approval"]) is None


def test_find_same_call_in_names_the_submitter_and_key(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(
            action("a1", submitted_hash="h1", status="outcome_unknown", submitted_by="key-7", idempotency_key="k7")
        )
        repos.actions.insert(action("a2", submitted_hash="h1", status="succeeded"))
        found = repos.actions.find_same_call_in("agent-1", "h1", "outcome_unknown")
        assert found == ("a1", "key-7", "k7")
        assert (found.id, found.submitted_by, found.idempotency_key) == ("a1", "key-7", "k7")
        assert repos.actions.find_same_call_in("agent-2", "h1", "outcome_unknown") is None
        assert repos.actions.find_same_call_in("agent-1", "h1", "executing") is None


def test_insert_finding_unknown_twin_inserts_and_names_this_agents_call_of_unknown_outcome(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("a1", submitted_hash="h1", status="outcome_unknown"))
        repos.actions.insert(action("a2", submitted_hash="h2", status="succeeded"))
        assert repos.actions.insert_finding_unknown_twin(action("b1", submitted_hash="h1", status="allowed")) == "a1"
        # the same call in another state, or another agent's, is no twin
        assert repos.actions.insert_finding_unknown_twin(action("b2", submitted_hash="h2", status="allowed")) is None
        assert repos.actions.insert_finding_unknown_twin(action("b3", submitted_hash="h1", agent_id="agent-2")) is None
        # nor is the inserted row itself
        assert (
            repos.actions.insert_finding_unknown_twin(action("b4", submitted_hash="h4", status="outcome_unknown"))
            is None
        )
    with db.transaction() as repos:
        assert [repos.actions.current_status(i) for i in ("b1", "b2", "b3", "b4")] == [
            "allowed",
            "allowed",
            "pending_approval",
            "outcome_unknown",
        ]


def test_insert_finding_unknown_twin_raises_duplicate_row_like_insert(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("a1"))
    with pytest.raises(DuplicateRow), db.transaction() as repos:
        repos.actions.insert_finding_unknown_twin(action("a1", tool="other"))
    with db.transaction() as repos:
        assert repos.actions.get("a1").tool == "shell"


# -- list_page -------------------------------------------------------------------------------
def _fill(db: RepoBackend) -> None:
    with db.transaction() as repos:
        for i in range(10):
            repos.actions.insert(
                action(
                    f"act-{i:02d}",
                    status="approved" if i % 2 else "denied",
                    tool="shell" if i < 5 else "http",
                    agent_id=f"agent-{i % 3}",
                    submitted_by=f"key-{i % 2}",
                    risk_level="high" if i % 4 == 0 else "low",
                    created_at=1000.0 + 10 * i,
                )
            )


def test_list_page_is_newest_first_and_limited(db: RepoBackend) -> None:
    _fill(db)
    with db.transaction() as repos:
        assert _ids(repos.actions.list_page(ActionFilter(), limit=3)) == ["act-09", "act-08", "act-07"]
        assert _ids(repos.actions.list_page(ActionFilter(), limit=3, offset=2)) == ["act-07", "act-06", "act-05"]
        assert len(repos.actions.list_page(ActionFilter(), limit=100)) == 10


def test_list_page_cursor_walks_every_row_once(db: RepoBackend) -> None:
    _fill(db)
    seen: list[str] = []
    cursor = None
    with db.transaction() as repos:
        for _ in range(5):  # 10 rows in pages of 4: three pages and an empty one
            page = repos.actions.list_page(ActionFilter(), limit=4, cursor=cursor)
            if not page:
                break
            seen += _ids(page)
            cursor = page[-1].seq
    assert seen == [f"act-{i:02d}" for i in range(9, -1, -1)]


def test_list_page_cursor_pages_a_filtered_list(db: RepoBackend) -> None:
    _fill(db)
    with db.transaction() as repos:
        first = repos.actions.list_page(ActionFilter(status="approved"), limit=2)
        rest = repos.actions.list_page(ActionFilter(status="approved"), limit=10, cursor=first[-1].seq)
    assert _ids(first) == ["act-09", "act-07"]
    assert _ids(rest) == ["act-05", "act-03", "act-01"]


def test_list_page_filters(db: RepoBackend) -> None:
    _fill(db)
    with db.transaction() as repos:

        def page(**where: object) -> list[str]:
            return _ids(repos.actions.list_page(ActionFilter(**where), limit=100))

        assert page(status="denied") == ["act-08", "act-06", "act-04", "act-02", "act-00"]
        assert page(tool="shell", status="approved") == ["act-03", "act-01"]
        assert page(agent_id="agent-2") == ["act-08", "act-05", "act-02"]
        assert page(submitted_by="key-1", tool="http") == ["act-09", "act-07", "act-05"]
        assert page(risk="high") == ["act-08", "act-04", "act-00"]
        assert page(since=1050.0) == ["act-09", "act-08", "act-07", "act-06", "act-05"]
        assert page(until=1030.0) == ["act-02", "act-01", "act-00"]
        assert page(since=1020.0, until=1040.0) == ["act-03", "act-02"]
        # An empty filter value filters nothing.
        assert len(page(status="", tool="")) == 10


def test_list_page_id_prefix_is_literal(db: RepoBackend) -> None:
    with db.transaction() as repos:
        for action_id in ("ab_1", "abx1", "ab%2", "ab", "xab_"):
            repos.actions.insert(action(action_id))

        def page(prefix: str) -> list[str]:
            return sorted(_ids(repos.actions.list_page(ActionFilter(id_prefix=prefix), limit=100)))

        assert page("ab_") == ["ab_1"]  # not a LIKE wildcard
        assert page("ab%") == ["ab%2"]
        assert page("ab") == ["ab", "ab%2", "ab_1", "abx1"]
        assert page("zz") == []


def test_list_page_until_keeps_rows_committed_out_of_order_within_the_slack(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("late", created_at=1030.0))
        repos.actions.insert(action("early", created_at=1010.0))  # a higher seq, an earlier time
        repos.actions.insert(action("next", created_at=1050.0))  # created within 60 s after `until`
        repos.actions.insert(action("after", created_at=2000.0))
        assert _ids(repos.actions.list_page(ActionFilter(until=1020.0), limit=10)) == ["early"]
        assert _ids(repos.actions.list_page(ActionFilter(until=1040.0), limit=10)) == ["early", "late"]


def test_list_page_until_starts_at_the_newest_row_created_within_the_slack(db: RepoBackend) -> None:
    """The walk starts at the seq of the row created last before `until` + 60 s, so a row
    with a higher seq but an earlier time is not listed when no row was created after it
    within that window. Pinned so the SQL and the memory twin change together."""
    with db.transaction() as repos:
        repos.actions.insert(action("late", created_at=1030.0))
        repos.actions.insert(action("early", created_at=1010.0))
        repos.actions.insert(action("after", created_at=2000.0))
        assert _ids(repos.actions.list_page(ActionFilter(until=1020.0), limit=10)) == []
        assert _ids(repos.actions.list_page(ActionFilter(until=1040.0), limit=10)) == ["late"]


# -- expiry picks ------------------------------------------------------------------------------
def test_next_due_picks_the_earliest_passed_expiry_of_the_status(db: RepoBackend) -> None:
    with db.transaction() as repos:
        assert repos.actions.next_due("pending_approval", 5000.0) is None
        assert repos.actions.earliest_expiry("pending_approval") is None
        repos.actions.insert(action("later", expires_at=1200.0))
        repos.actions.insert(action("first", expires_at=1100.0))
        repos.actions.insert(action("future", expires_at=3000.0))
        repos.actions.insert(action("never", expires_at=None))
        repos.actions.insert(action("other-status", status="approved", expires_at=1000.0))
        assert repos.actions.next_due("pending_approval", 1050.0) is None
        assert repos.actions.next_due("pending_approval", 1100.0) == "first"  # at the instant counts
        assert repos.actions.next_due("pending_approval", 2000.0) == "first"
        assert repos.actions.next_due("approved", 2000.0) == "other-status"
        assert repos.actions.earliest_expiry("pending_approval") == 1100.0
        repos.actions.compare_and_set("first", statuses=["pending_approval"], version=1, values={"status": "cancelled"})
        assert repos.actions.next_due("pending_approval", 2000.0) == "later"
        assert repos.actions.earliest_expiry("pending_approval") == 1200.0


def test_next_lapsed_skips_approvals_already_picked_up(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("picked", status="approved", lapses_at=1100.0, picked_up_at=1050.0))
        repos.actions.insert(action("unpicked", status="approved", lapses_at=1200.0))
        repos.actions.insert(action("held", status="pending_approval", lapses_at=1000.0))
        repos.actions.insert(action("no-deadline", status="approved"))
        assert repos.actions.next_lapsed("approved", 1150.0) is None
        assert repos.actions.next_lapsed("approved", 1300.0) == "unpicked"
        assert repos.actions.earliest_lapse("approved") == 1200.0
        assert repos.actions.earliest_lapse("denied") is None


def test_next_lease_due_picks_the_earliest_run_out_lease(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.actions.insert(action("slow", status="executing", lease_expires_at=1300.0))
        repos.actions.insert(action("stuck", status="executing", lease_expires_at=1100.0))
        repos.actions.insert(action("done", status="succeeded", lease_expires_at=1000.0))
        assert repos.actions.next_lease_due("executing", 1099.0) is None
        assert repos.actions.next_lease_due("executing", 1500.0) == "stuck"
        assert repos.actions.earliest_lease("executing") == 1100.0
        assert repos.actions.earliest_lease("outcome_unknown") is None

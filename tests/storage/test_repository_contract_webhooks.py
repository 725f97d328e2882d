"""The WebhookStore contract (receivers and the delivery queue), on SQLite, PostgreSQL and memory alike."""

from __future__ import annotations

import pytest

from faramesh.storage import DuplicateRow
from faramesh.storage.repositories import Repositories
from faramesh.storage.rows import DELIVERED, FAILED, PENDING
from tests.storage.contract import RepoBackend, delivery, webhook


def _by_seq(repos: Repositories) -> dict[int, object]:
    return {row.event_seq: row for row in repos.webhooks.list_deliveries(None, 1000)}


def _status(repos: Repositories) -> dict[int, str]:
    return {row.event_seq: row.status for row in repos.webhooks.list_deliveries(None, 1000)}


# -- receivers -------------------------------------------------------------------------------
def test_webhooks_read_back_in_creation_order(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.webhooks.insert_webhook(**webhook("w2", created_at=1000.0))
        repos.webhooks.insert_webhook(**webhook("w3", created_at=999.0, format="slack", created_by=None))
        repos.webhooks.insert_webhook(**webhook("w1", created_at=1000.0, description="ops"))
    with db.transaction() as repos:
        assert [row.id for row in repos.webhooks.list_webhooks()] == ["w3", "w1", "w2"]
        row = repos.webhooks.get_webhook("w3")
        assert row is not None
        assert (row.url, row.secret, row.events, row.format, row.description, row.created_by) == (
            "https://hooks.example/w3",
            "s3cret",
            '["*"]',
            "slack",
            "",
            None,
        )
        assert row.created_at == 999.0
        assert repos.webhooks.get_webhook("missing") is None


def test_a_webhook_id_is_unique(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.webhooks.insert_webhook(**webhook("w1"))
    with pytest.raises(DuplicateRow), db.transaction() as repos:
        repos.webhooks.insert_webhook(**webhook("w1", url="https://elsewhere.example/"))
    with db.transaction() as repos:
        assert repos.webhooks.get_webhook("w1").url == "https://hooks.example/w1"


def test_deleting_a_webhook_fails_only_its_pending_deliveries(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.webhooks.insert_webhook(**webhook("w1"))
        repos.webhooks.insert_webhook(**webhook("w2"))
        repos.webhooks.enqueue([delivery("w1", 1), delivery("w1", 2), delivery("w2", 3)])
        sent = repos.webhooks.latest_delivery("w1")
        assert sent is not None and sent.event_seq == 2
        repos.webhooks.record_attempt(
            delivery_id=sent.id,
            attempts_before=0,
            ok=True,
            http_status=200,
            error=None,
            now=1001.0,
            next_attempt_at=None,
        )
        repos.webhooks.delete_webhook("w1")
        repos.webhooks.delete_webhook("missing")
        assert [row.id for row in repos.webhooks.list_webhooks()] == ["w2"]
        assert _status(repos) == {1: FAILED, 2: DELIVERED, 3: PENDING}
        assert repos.webhooks.list_deliveries("w1", 10)[1].last_error == "webhook removed"
        assert repos.webhooks.count_pending() == 1


# -- the delivery queue ----------------------------------------------------------------------
def test_enqueue_records_each_event_once_per_webhook(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.webhooks.enqueue([])
        repos.webhooks.enqueue([delivery("w1", 1), delivery("w2", 1)])
        # Another process saw the same events: nothing new, and no error.
        repos.webhooks.enqueue([delivery("w1", 1, payload="again"), delivery("w1", 2), delivery("w1", 2)])
        rows = repos.webhooks.list_deliveries(None, 100)
        assert sorted((row.webhook_id, row.event_seq) for row in rows) == [("w1", 1), ("w1", 2), ("w2", 1)]
        first = next(row for row in rows if (row.webhook_id, row.event_seq) == ("w1", 1))
        assert first.payload == '{"seq":1}'
        assert (first.attempts, first.status, first.last_status, first.delivered_at) == (0, PENDING, None, None)


def test_deliveries_list_newest_first(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.webhooks.enqueue([delivery("w1", 1), delivery("w2", 2), delivery("w1", 3)])
        assert [row.event_seq for row in repos.webhooks.list_deliveries()] == [3, 2, 1]
        assert [row.event_seq for row in repos.webhooks.list_deliveries("w1")] == [3, 1]
        assert [row.event_seq for row in repos.webhooks.list_deliveries(None, 2)] == [3, 2]
        assert repos.webhooks.latest_delivery("w2").event_seq == 2
        assert repos.webhooks.latest_delivery("w9") is None
        ids = [row.id for row in repos.webhooks.list_deliveries()]
        assert ids == sorted(ids, reverse=True)


def test_due_takes_pending_deliveries_whose_time_came_oldest_first(db: RepoBackend) -> None:
    with db.transaction() as repos:
        assert repos.webhooks.next_due() is None
        repos.webhooks.enqueue(
            [
                delivery("w1", 1, next_attempt_at=1030.0),
                delivery("w1", 2, next_attempt_at=1010.0),
                delivery("w2", 3, next_attempt_at=1010.0),
                delivery("w3", 4, next_attempt_at=1020.0),
                delivery("w1", 5, next_attempt_at=5000.0),
                delivery("w1", 6, next_attempt_at=900.0, status=FAILED),
            ]
        )
        assert [row.event_seq for row in repos.webhooks.due(1030.0, 10)] == [2, 3, 4, 1]
        assert [row.event_seq for row in repos.webhooks.due(1030.0, 2)] == [2, 3]
        assert [row.event_seq for row in repos.webhooks.due(1030.0, 10, exclude=["w1"])] == [3, 4]
        assert repos.webhooks.due(1000.0, 10) == []
        assert repos.webhooks.next_due() == 1010.0
        assert repos.webhooks.count_pending() == 5


def test_a_delivery_is_claimed_by_one_caller_until_its_lease_ends(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.webhooks.enqueue([delivery("w1", 1), delivery("w1", 2)])
        candidates = repos.webhooks.due(1000.0, 10)
        # Two senders saw the same candidates: the first takes them, the second none.
        assert [row.event_seq for row in repos.webhooks.claim(candidates, 1000.0, 30.0)] == [1, 2]
        assert repos.webhooks.claim(candidates, 1000.0, 30.0) == []
        assert repos.webhooks.due(1029.0, 10) == []
        assert repos.webhooks.next_due() == 1030.0
        # After the lease a stale sender can take it again, once.
        again = repos.webhooks.due(1030.0, 10)
        assert [row.event_seq for row in again] == [1, 2]
        assert len(repos.webhooks.claim(again, 1030.0, 30.0)) == 2
        assert repos.webhooks.claim(again, 1030.0, 30.0) == []


def test_a_candidate_that_was_attempted_meanwhile_is_not_claimed(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.webhooks.enqueue([delivery("w1", 1)])
        (stale,) = repos.webhooks.due(1000.0, 10)
        repos.webhooks.record_attempt(
            delivery_id=stale.id,
            attempts_before=0,
            ok=False,
            http_status=500,
            error="boom",
            now=1000.0,
            next_attempt_at=1000.0,
        )
        assert repos.webhooks.claim([stale], 1000.0, 30.0) == []


def test_record_attempt_stores_the_outcome(db: RepoBackend) -> None:
    with db.transaction() as repos:
        repos.webhooks.enqueue([delivery("w1", 1), delivery("w1", 2), delivery("w1", 3)])
        ids = {row.event_seq: row.id for row in repos.webhooks.list_deliveries()}
        attempt = repos.webhooks.record_attempt
        attempt(
            delivery_id=ids[1],
            attempts_before=0,
            ok=True,
            http_status=204,
            error=None,
            now=1005.0,
            next_attempt_at=None,
        )
        attempt(
            delivery_id=ids[2],
            attempts_before=0,
            ok=False,
            http_status=503,
            error="busy",
            now=1005.0,
            next_attempt_at=1065.0,
        )
        attempt(
            delivery_id=ids[3],
            attempts_before=0,
            ok=False,
            http_status=None,
            error="dns",
            now=1005.0,
            next_attempt_at=None,
        )
        rows = _by_seq(repos)
        ok, retry, gave_up = rows[1], rows[2], rows[3]
        assert (ok.status, ok.attempts, ok.last_status, ok.last_error, ok.delivered_at) == (
            DELIVERED,
            1,
            204,
            None,
            1005.0,
        )
        assert (retry.status, retry.attempts, retry.last_status, retry.last_error, retry.next_attempt_at) == (
            PENDING,
            1,
            503,
            "busy",
            1065.0,
        )
        assert (gave_up.status, gave_up.attempts, gave_up.last_error) == (FAILED, 1, "dns")
        # An outcome for an attempt count that moved on, or for a finished delivery, changes nothing.
        attempt(
            delivery_id=ids[2],
            attempts_before=0,
            ok=True,
            http_status=200,
            error=None,
            now=1006.0,
            next_attempt_at=None,
        )
        attempt(
            delivery_id=ids[1],
            attempts_before=1,
            ok=False,
            http_status=500,
            error="x",
            now=1006.0,
            next_attempt_at=None,
        )
        assert _status(repos) == {1: DELIVERED, 2: PENDING, 3: FAILED}
        assert repos.webhooks.next_due() == 1065.0
        assert repos.webhooks.count_pending() == 1

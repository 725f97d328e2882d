"""A PostgreSQL connection that dies around a decision's commit.

The connection is really cut: `pg_terminate_backend` from another connection, at the
moment the store is told to (right after a write commits, or at the first statement
of the next write). The client must never be told "not applied" about a change that
committed, and what the database holds must match what the client was told.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from faramesh.config import Settings
from faramesh.policy import Policy
from faramesh.server.app import create_app
from faramesh.service import Governor
from faramesh.service import keys as service_keys
from faramesh.storage import Store
from tests.adversarial.support import assert_error
from tests.conftest import SEED_POLICY
from tests.inprocess import IN_PROCESS_SECRET

T = TypeVar("T")


# True in the app's background tasks (expiry sweeper, webhook dispatcher, key watch) and
# in the threads they run database work in: the app's lifespan sets it, and its tasks and
# threadpool calls inherit it. Requests never see it.
IN_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar("in_background", default=False)


class DroppingStore(Store):
    """A store whose next statement after a trigger runs on a connection that was cut.

    Only the requests' statements trigger or meet a cut: the sweeper writes every half
    second, and a background write or read that took the trigger in their place would
    leave the request under test untouched.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.admin_dsn = url
        self.drop_after_commit = False  # cut the connection of the next statement after the next write
        self.drop_in_write = False  # cut the connection of the next write's first statement
        self.armed = False  # cut the connection of the very next statement
        self.drop_again = False  # after the next cut, cut the next statement's connection too
        self.dropped = 0
        event.listen(self.engine, "before_cursor_execute", self._maybe_drop)
        # A grouped write's statements go straight to the driver (storage/prepared.py),
        # past the hook above: its transaction's start is where that cut comes.
        event.listen(self.engine, "begin", self._maybe_drop)

    def write(self, fn: Callable[[Any], T]) -> T:
        if IN_BACKGROUND.get():
            return super().write(fn)
        if self.drop_in_write:
            self.drop_in_write, self.armed = False, True
        result = super().write(fn)
        if self.drop_after_commit:
            self.drop_after_commit, self.armed = False, True
        return result

    def write_grouped(self, fn: Callable[[Any], T]) -> T:
        # An allowed submit's write, run by the writer thread in a group.
        if self.drop_in_write:
            self.drop_in_write, self.armed = False, True
        return super().write_grouped(fn)

    async def write_async(self, fn: Callable[[Any], T], *, grouped: bool = False) -> T:
        # A submit's write awaited by the event loop: grouped, in the writer thread's
        # group; alone, through `write` in a worker thread (which arms the cut itself).
        if grouped and self.drop_in_write:
            self.drop_in_write, self.armed = False, True
        return await super().write_async(fn, grouped=grouped)

    def _maybe_drop(self, conn: Any, *_args: Any) -> None:
        if not self.armed or IN_BACKGROUND.get():
            return
        self.armed = False
        pid = conn.connection.dbapi_connection.info.backend_pid
        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + 10
            while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                assert time.monotonic() < deadline, "the backend did not end"
                time.sleep(0.01)
        self.dropped += 1
        if self.drop_again:
            self.drop_again, self.armed = False, True


@dataclass
class Rig:
    client: TestClient
    store: DroppingStore
    agent: str
    approver: str

    def h(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def pending(self) -> str:
        r = self.client.post(
            "/v1/actions",
            json={"tool": "refund", "operation": "process", "params": {"amount": 500}},
            headers=self.h(self.agent),
        )
        assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
        return str(r.json()["id"])

    def read(self, action_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/actions/{action_id}", headers=self.h(self.approver))
        assert r.status_code == 200, r.text
        return dict(r.json())

    def events(self, action_id: str) -> list[str]:
        r = self.client.get(f"/v1/actions/{action_id}/events", headers=self.h(self.approver))
        return [e["event"] for e in r.json()["events"]]


@pytest.fixture
def rig(pg_url: str) -> Iterator[Rig]:
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    store = DroppingStore(dsn)
    store.upgrade()
    g = Governor(store, Policy.from_file(SEED_POLICY), secret_key=IN_PROCESS_SECRET)
    _, agent = service_keys.create_key(store, role="agent", name="agent")
    _, approver = service_keys.create_key(store, role="approver", name="approver")
    app = create_app(Settings(database_url=dsn, rate_limit="off"), governor=g)
    lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def marked_lifespan(app: Any) -> AsyncIterator[Any]:
        IN_BACKGROUND.set(True)  # the tasks the lifespan starts inherit it
        async with lifespan(app) as state:
            yield state

    app.router.lifespan_context = marked_lifespan
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Rig(client, store, agent, approver)
    finally:
        store.close()


def test_an_approval_that_committed_is_answered_as_approved_when_the_connection_drops(rig: Rig) -> None:
    action_id = rig.pending()
    rig.store.drop_after_commit = True
    r = rig.client.post(f"/v1/actions/{action_id}/approve", json={"reason": "ok"}, headers=rig.h(rig.approver))
    rig.store.armed = False  # the answer needed no statement after the commit
    assert "not applied" not in r.text
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["status"] == "approved" and answer["decision_reason"] == "ok"
    assert [a["approve"] for a in answer["approvals"]] == [True]
    stored = rig.read(action_id)
    assert stored["status"] == "approved" and stored["version"] == answer["version"]
    assert rig.events(action_id).count("action.approved") == 1


def test_a_denial_that_committed_is_answered_as_denied_when_the_connection_drops(rig: Rig) -> None:
    action_id = rig.pending()
    rig.store.drop_after_commit = True
    r = rig.client.post(f"/v1/actions/{action_id}/deny", json={"reason": "no"}, headers=rig.h(rig.approver))
    rig.store.armed = False
    assert r.status_code == 200 and r.json()["status"] == "denied", r.text
    assert rig.read(action_id)["status"] == "denied"
    assert rig.events(action_id).count("action.denied") == 1


def test_a_connection_lost_inside_the_write_is_a_503_to_re_read_never_not_applied(rig: Rig) -> None:
    action_id = rig.pending()
    rig.store.drop_in_write = True  # the decision's first statement meets a dead connection
    r = rig.client.post(f"/v1/actions/{action_id}/approve", json={"reason": "ok"}, headers=rig.h(rig.approver))
    assert rig.store.dropped == 1
    body = assert_error(r, 503, "unavailable")
    assert "not applied" not in r.text
    assert "re-read" in body["detail"] and body["error"]["outcome"] == "unknown"
    assert r.headers["retry-after"] == "1"
    # Re-reading tells the truth (here: nothing was written), and the retry goes through.
    assert rig.read(action_id)["status"] == "pending_approval"
    assert "action.approved" not in rig.events(action_id)
    again = rig.client.post(f"/v1/actions/{action_id}/approve", json={"reason": "ok"}, headers=rig.h(rig.approver))
    assert again.status_code == 200 and again.json()["status"] == "approved", again.text


def test_a_read_that_loses_its_connection_is_a_503_without_an_outcome(rig: Rig) -> None:
    action_id = rig.pending()
    rig.store.armed = True
    r = rig.client.get(f"/v1/actions/{action_id}", headers=rig.h(rig.approver))
    body = assert_error(r, 503, "unavailable")
    assert "re-read" not in body["detail"] and "not applied" not in r.text


def test_a_grouped_submit_whose_connection_is_lost_before_its_commit_runs_again_and_lands(rig: Rig) -> None:
    """An allowed submit is written in a group by the writer thread (PostgreSQL). Its
    connection dies before the group's COMMIT was sent: nothing of the group was written,
    and submits may run again, so the group runs once more on a fresh connection and the
    caller gets its 201, recorded once."""
    small = {"tool": "refund", "operation": "process", "params": {"amount": 5}}
    rig.store.drop_in_write = True
    r = rig.client.post("/v1/actions", json=small, headers=rig.h(rig.agent))
    assert rig.store.dropped == 1
    assert r.status_code == 201 and r.json()["status"] == "allowed", r.text
    listed = rig.client.get("/v1/actions", headers=rig.h(rig.approver)).json()["actions"]
    assert [a["id"] for a in listed] == [r.json()["id"]]
    assert rig.events(r.json()["id"]) == ["action.submitted"]


def test_a_grouped_submit_that_loses_its_connection_twice_is_a_503_and_the_next_one_lands(rig: Rig) -> None:
    """The fresh connection dies too: the caller is told to re-read, nothing was written,
    and the next group gets a fresh connection."""
    small = {"tool": "refund", "operation": "process", "params": {"amount": 5}}
    rig.store.drop_in_write = rig.store.drop_again = True
    r = rig.client.post("/v1/actions", json=small, headers=rig.h(rig.agent))
    assert rig.store.dropped == 2
    body = assert_error(r, 503, "unavailable")
    assert "re-read" in body["detail"] and body["error"]["outcome"] == "unknown"
    listed = rig.client.get("/v1/actions", headers=rig.h(rig.approver)).json()["actions"]
    assert listed == []  # re-reading tells the truth: the submit was not recorded
    again = rig.client.post("/v1/actions", json=small, headers=rig.h(rig.agent))
    assert again.status_code == 201 and again.json()["status"] == "allowed", again.text
    assert [a["id"] for a in rig.client.get("/v1/actions", headers=rig.h(rig.approver)).json()["actions"]] == [
        again.json()["id"]
    ]

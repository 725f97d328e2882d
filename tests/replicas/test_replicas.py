"""Two real server processes on one PostgreSQL database.

Every test gets a fresh database (`pg_url`) and starts two `faramesh serve` processes
on it: replica A and replica B, as two machines behind a load balancer would run.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from sqlalchemy import select

from faramesh import audit
from faramesh.storage import Store
from faramesh.storage.schema import GENESIS_HASH, audit_log
from tests.conftest import SEED_POLICY, ServerProcess, auth

Replicas = tuple[ServerProcess, ServerProcess]

LIMITED_POLICY = """
rules:
  - id: search-quota
    match:
      tool: search
      operation: query
    allow: true
    reason: Searches are allowed, ten a minute per agent
    rate_limit: {max: 10, per: 1m}
"""


@pytest.fixture
def replicas(pg_url: str, start_server: Callable[..., ServerProcess]) -> Replicas:
    a = start_server(database_url=pg_url)
    b = start_server(database_url=pg_url)
    b.admin_key = a.admin_key  # the first start created it; both replicas read the same keys
    return a, b


def submit(server: ServerProcess, key: str, amount: float = 500, **body: Any) -> dict[str, Any]:
    payload = {"tool": "refund", "operation": "process", "params": {"amount": amount}, "reattach": False} | body
    r = httpx.post(server.url + "/v1/actions", json=payload, headers=auth(key), timeout=30)
    assert r.status_code == 201, r.text
    return dict(r.json())


def get_action(server: ServerProcess, key: str, action_id: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/v1/actions/{action_id}", headers=auth(key), timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def audit_events(server: ServerProcess, key: str, action_id: str) -> list[str]:
    r = httpx.get(f"{server.url}/v1/actions/{action_id}/events", headers=auth(key), timeout=10)
    assert r.status_code == 200, r.text
    return [e["event"] for e in r.json()["events"]]


def verify_chain(database_url: str) -> list[audit.AuditRecord]:
    """Recompute the whole audit chain from the database; return its records."""
    store = Store(database_url)
    try:
        rows = store.read(lambda conn: conn.execute(select(audit_log).order_by(audit_log.c.seq)).all())
        head_seq, head_hash = store.read(audit.head)
    finally:
        store.close()
    records = [audit.row_to_record(r) for r in rows]
    prev = GENESIS_HASH
    for expected_seq, rec in enumerate(records, start=1):
        assert rec.seq == expected_seq, "the chain has a gap or a duplicate"
        assert rec.prev_hash == prev, f"record {rec.seq} does not link to its predecessor"
        body = audit.record_body(
            seq=rec.seq, ts=rec.ts, event=rec.event, action_id=rec.action_id, actor=rec.actor, data=rec.data
        )
        assert audit.record_hash(prev, body) == rec.hash, f"record {rec.seq} does not match its hash"
        prev = rec.hash
    assert (head_seq, head_hash) == (len(records), prev)
    return records


class EventStream:
    """Reads /v1/events in a thread and keeps every event it receives."""

    def __init__(self, server: ServerProcess, key: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._changed = threading.Condition()
        self._socket: socket.socket | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=60))
        self._stream = self._client.stream("GET", server.url + "/v1/events", headers=auth(key))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.connected.wait(10), "the event stream did not connect"

    def _read(self) -> None:
        try:
            with self._stream as response:
                self._socket = response.extensions["network_stream"].get_extra_info("socket")
                for line in response.iter_lines():
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith("data: "):
                        with self._changed:
                            self.events.append(orjson.loads(line[6:]))
                            self._changed.notify_all()
        except httpx.HTTPError:
            pass

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                assert left > 0, f"no matching event; got {self.events}"
                self._changed.wait(left)

    def close(self) -> None:
        # Shut the socket down so the blocked reader returns and the server sees the
        # client leave (closing the client from this thread would not wake the reader).
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        self._client.close()


@pytest.fixture
def stream_factory() -> Iterator[Callable[[ServerProcess, str], EventStream]]:
    streams: list[EventStream] = []

    def open_stream(server: ServerProcess, key: str) -> EventStream:
        stream = EventStream(server, key)
        streams.append(stream)
        return stream

    yield open_stream
    for stream in streams:
        stream.close()


def test_agent_waiting_on_a_wakes_when_b_approves(replicas: Replicas) -> None:
    a, b = replicas
    agent = a.create_key("agent")
    approver = a.create_key("approver")
    for _ in range(3):
        action = submit(a, agent)
        assert action["status"] == "pending_approval"
        answer: dict[str, Any] = {}

        def wait(action_id: str = action["id"], answer: dict[str, Any] = answer) -> None:
            r = httpx.get(
                f"{a.url}/v1/actions/{action_id}/wait", params={"timeout": 30}, headers=auth(agent), timeout=40
            )
            answer.update(r.json())

        waiter = threading.Thread(target=wait)
        waiter.start()
        r = httpx.post(f"{b.url}/v1/actions/{action['id']}/approve", json={"reason": "ok"}, headers=auth(approver))
        assert r.status_code == 200, r.text
        waiter.join(40)
        assert answer["status"] == "approved"
        assert answer["decided_by"] == r.json()["decided_by"]


def test_event_stream_on_a_reports_decisions_made_on_b(
    replicas: Replicas, stream_factory: Callable[[ServerProcess, str], EventStream]
) -> None:
    a, b = replicas
    agent = b.create_key("agent")
    approver = a.create_key("approver")
    stream = stream_factory(a, approver)
    action = submit(b, agent)
    created = stream.wait_for(lambda e: e["action_id"] == action["id"] and e["type"] == "action.created")
    assert created["action"]["status"] == "pending_approval"
    r = httpx.post(f"{b.url}/v1/actions/{action['id']}/deny", json={"reason": "no"}, headers=auth(approver))
    assert r.status_code == 200, r.text
    denied = stream.wait_for(lambda e: e["action_id"] == action["id"] and e["type"] == "action.denied")
    assert denied["status"] == "denied"
    assert denied["action"]["decision_reason"] == "no"


def test_event_stream_keeps_working_after_the_listener_connection_is_killed(
    replicas: Replicas, pg_url: str, stream_factory: Callable[[ServerProcess, str], EventStream]
) -> None:
    a, b = replicas
    agent = b.create_key("agent")
    approver = a.create_key("approver")
    stream = stream_factory(a, approver)
    actions = [submit(b, agent) for _ in range(5)]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'faramesh-listener' AND datname = current_database()"
        ).fetchone()
    assert killed is not None and killed[0] == 2  # one listener per replica
    # Decide at once, while the listeners are reconnecting: these notices are lost,
    # and the replicas must catch up from the audit log.
    for action in actions:
        r = httpx.post(f"{b.url}/v1/actions/{action['id']}/approve", json={}, headers=auth(approver))
        assert r.status_code == 200, r.text
    for action in actions:
        stream.wait_for(lambda e, i=action["id"]: e["action_id"] == i and e["type"] == "action.approved")
    seqs = [e["seq"] for e in stream.events if e["type"] == "action.approved"]
    assert len(seqs) == len(set(seqs)) == len(actions), "an event was lost or announced twice"


def test_racing_approve_and_deny_across_replicas_have_one_winner(replicas: Replicas) -> None:
    a, b = replicas
    agent = a.create_key("agent")
    approvers = [a.create_key("approver") for _ in range(4)]
    for _ in range(10):
        action = submit(a, agent)
        barrier = threading.Barrier(len(approvers))

        def decide(
            i: int, key: str, action_id: str = action["id"], barrier: threading.Barrier = barrier
        ) -> tuple[str, int, Any]:
            server, verb = (a, "approve") if i % 2 else (b, "deny")
            barrier.wait()
            r = httpx.post(f"{server.url}/v1/actions/{action_id}/{verb}", json={}, headers=auth(key), timeout=30)
            return verb, r.status_code, r.json()

        with ThreadPoolExecutor(len(approvers)) as pool:
            results = list(pool.map(decide, range(len(approvers)), approvers))
        winners = [r for r in results if r[1] == 200]
        assert len(winners) == 1, results
        assert all(code == 409 for _, code, _ in results if code != 200), results
        final = "approved" if winners[0][0] == "approve" else "denied"
        assert get_action(b, approvers[0], action["id"])["status"] == final
        assert audit_events(a, approvers[0], action["id"]) == ["action.submitted", f"action.{final}"]


def test_concurrent_submits_on_both_replicas_keep_one_valid_audit_chain(replicas: Replicas, pg_url: str) -> None:
    a, b = replicas
    keys = [a.create_key("agent") for _ in range(4)]
    per_worker = 25

    def work(i: int) -> list[str]:
        server, key = (a, b)[i % 2], keys[i % len(keys)]
        with httpx.Client(timeout=30) as client:
            ids = []
            for n in range(per_worker):
                r = client.post(
                    server.url + "/v1/actions",
                    json={"tool": "refund", "operation": "process", "params": {"amount": n}, "context": {}},
                    headers=auth(key),
                )
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
            return ids

    with ThreadPoolExecutor(8) as pool:
        submitted = [i for ids in pool.map(work, range(8)) for i in ids]
    assert len(set(submitted)) == 8 * per_worker
    records = verify_chain(pg_url)
    recorded = [r.action_id for r in records if r.event == "action.submitted"]
    assert sorted(recorded) == sorted(submitted)


def test_rate_limit_holds_across_replicas(
    pg_url: str, start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    policy = tmp_path / "limited.yaml"
    policy.write_text(LIMITED_POLICY)
    a = start_server(database_url=pg_url, policy=policy)
    b = start_server(database_url=pg_url, policy=policy)
    key = a.create_key("agent", agent_id="crawler")

    def one(i: int) -> str:
        server = (a, b)[i % 2]
        r = httpx.post(
            server.url + "/v1/actions",
            json={"tool": "search", "operation": "query", "params": {"q": str(i)}, "context": {}},
            headers=auth(key),
            timeout=30,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["status"])

    with ThreadPoolExecutor(25) as pool:
        statuses = Counter(pool.map(one, range(50)))
    assert statuses == {"allowed": 10, "denied": 40}


def test_expiry_sweepers_on_both_replicas_expire_each_action_once(
    pg_url: str, start_server: Callable[..., ServerProcess]
) -> None:
    args = ("--approval-timeout", "1s")
    a = start_server(database_url=pg_url, extra_args=args)
    b = start_server(database_url=pg_url, extra_args=args)
    agent = a.create_key("agent")
    approver = a.create_key("approver")
    with ThreadPoolExecutor(8) as pool:
        actions = list(pool.map(lambda i: submit((a, b)[i % 2], agent), range(40)))
    deadline = time.monotonic() + 30
    pending = {x["id"] for x in actions}
    while pending and time.monotonic() < deadline:
        listed = httpx.get(
            a.url + "/v1/actions", params={"status": "pending_approval", "limit": 500}, headers=auth(approver)
        ).json()["actions"]
        pending = {x["id"] for x in listed} & pending
        time.sleep(0.2)
    assert not pending, "the sweepers left actions pending"
    for action in actions:
        final = get_action(b, approver, action["id"])
        assert final["status"] == "denied" and final["reason"].startswith("Approval expired")
        assert audit_events(b, approver, action["id"]) == ["action.submitted", "action.expired"]
    verify_chain(pg_url)


def test_replicas_started_together_on_an_empty_database_both_come_up(
    pg_url: str, start_server: Callable[..., ServerProcess]
) -> None:
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: start_server(database_url=pg_url, policy=SEED_POLICY), range(2))
    admin = a.admin_key or b.admin_key
    assert admin
    for server in (a, b):
        assert httpx.get(server.url + "/ready").status_code == 200
        assert httpx.get(server.url + "/v1/actions", headers=auth(admin)).status_code == 200

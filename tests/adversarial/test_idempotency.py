"""Idempotency-Key: the same request with the same key is one action, even when the
retries race; the same key with a different request is refused."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import pytest

from tests.adversarial.support import assert_error, snapshot, unchanged
from tests.inprocess import InProcessServer, auth

BODY = {"tool": "refund", "operation": "process", "params": {"amount": 30}, "context": {"order": "o-1"}}


@pytest.fixture(scope="module")
def ik(client: InProcessServer) -> dict[str, str]:
    return {"agent": client.create_key("agent"), "agent2": client.create_key("agent")}


def post(client: InProcessServer, key: str, idem: str, body: Any) -> httpx.Response:
    headers = auth(key) | {"Idempotency-Key": idem}
    return client.post("/v1/actions", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize("amount", [30, 500, None], ids=["allowed", "pending", "denied"])
def test_same_key_same_body_is_the_same_action(client: InProcessServer, ik: dict[str, str], amount: Any) -> None:
    body = BODY | {"params": {} if amount is None else {"amount": amount}}
    idem = str(uuid.uuid4())
    first = post(client, ik["agent"], idem, body)
    assert first.status_code == 201
    with unchanged(client):
        for _ in range(3):
            again = post(client, ik["agent"], idem, body)
            assert again.status_code == 201
            assert again.json()["id"] == first.json()["id"]
            assert again.json()["status"] == first.json()["status"]
            assert again.json()["request_hash"] == first.json()["request_hash"]


def test_key_order_and_spacing_do_not_matter(client: InProcessServer, ik: dict[str, str]) -> None:
    idem = str(uuid.uuid4())
    first = post(client, ik["agent"], idem, BODY)
    reordered = b'{ "context" : {"order":"o-1"}, "params": {"amount": 30.0}, "operation":"process","tool":"refund" }'
    with unchanged(client):
        r = client.post(
            "/v1/actions",
            content=reordered,
            headers=auth(ik["agent"]) | {"Idempotency-Key": idem, "Content-Type": "application/json"},
        )
    assert r.status_code == 201 and r.json()["id"] == first.json()["id"]


@pytest.mark.parametrize(
    "change",
    [
        {"params": {"amount": 31}},
        {"params": {"amount": 30, "extra": 1}},
        {"operation": "void"},
        {"tool": "payout"},
        {"context": {"order": "o-2"}},
        {"agent_id": "someone-else"},
    ],
    ids=["amount", "extra-param", "operation", "tool", "context", "agent-id"],
)
def test_same_key_different_body_is_refused(
    client: InProcessServer, ik: dict[str, str], change: dict[str, Any]
) -> None:
    idem = str(uuid.uuid4())
    first = post(client, ik["agent"], idem, BODY)
    assert first.status_code == 201
    with unchanged(client):
        r = post(client, ik["agent"], idem, BODY | change)
        assert_error(r, 409, "idempotency_mismatch")
    # The original is still what the key returns.
    assert post(client, ik["agent"], idem, BODY).json()["id"] == first.json()["id"]


def test_keys_are_per_api_key(client: InProcessServer, ik: dict[str, str]) -> None:
    """Another caller using the same Idempotency-Key neither sees nor replaces the
    first caller's action."""
    idem = str(uuid.uuid4())
    mine = post(client, ik["agent"], idem, BODY).json()
    theirs = post(client, ik["agent2"], idem, BODY | {"params": {"amount": 99}})
    assert theirs.status_code == 201 and theirs.json()["id"] != mine["id"]
    assert post(client, ik["agent"], idem, BODY).json()["id"] == mine["id"]


def test_racing_retries_make_one_action(client: InProcessServer, ik: dict[str, str]) -> None:
    idem = str(uuid.uuid4())
    before = snapshot(client)
    barrier = threading.Barrier(12)
    out: list[httpx.Response] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        r = post(client, ik["agent"], idem, BODY)
        with lock:
            out.append(r)

    threads = [threading.Thread(target=run) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(out) == 12 and {r.status_code for r in out} == {201}
    assert len({r.json()["id"] for r in out}) == 1
    after = snapshot(client)
    assert after.counts["actions"] == before.counts["actions"] + 1
    assert after.counts["audit_log"] == before.counts["audit_log"] + 1


def test_racing_conflicting_bodies_make_one_action(client: InProcessServer, ik: dict[str, str]) -> None:
    """Racing requests with one key and different bodies: one wins, the rest are 409."""
    idem = str(uuid.uuid4())
    before = snapshot(client)
    barrier = threading.Barrier(8)
    out: list[httpx.Response] = []
    lock = threading.Lock()

    def run(amount: int) -> None:
        barrier.wait()
        r = post(client, ik["agent"], idem, BODY | {"params": {"amount": amount}})
        with lock:
            out.append(r)

    threads = [threading.Thread(target=run, args=(10 + i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    created = [r for r in out if r.status_code == 201]
    assert len(created) == 1
    for r in out:
        if r.status_code != 201:
            assert_error(r, 409, "idempotency_mismatch")
    assert snapshot(client).counts["actions"] == before.counts["actions"] + 1

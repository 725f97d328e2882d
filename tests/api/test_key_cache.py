"""Verified API keys are remembered for a moment, never longer than a revocation allows.

The server skips the key read for a key it verified within the last few seconds. These
tests pin down what that may never cost: a key revoked through any server process is
refused on its next request; one revoked where no notice reaches the server (another
process writing the same SQLite file, like the CLI) is refused once the bound has passed;
unknown keys are never remembered.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from faramesh.model import Role
from faramesh.policy import Policy
from faramesh.service import Governor
from faramesh.service import keys as service_keys
from faramesh.service.key_cache import KeyCache
from faramesh.storage import Store
from tests.conftest import SEED_POLICY, auth, fresh_database
from tests.inprocess import IN_PROCESS_SECRET, InProcessServer


class Ticks:
    """The cache's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def two_processes(backend: str, tmp_path: Path) -> Iterator[tuple[Governor, Store]]:
    """A server's governor and a second store on the same database: what the CLI opens
    when it writes there without going through the server."""
    with fresh_database(backend, tmp_path) as url:
        store, other = Store(url), Store(url)
        store.upgrade()
        try:
            yield Governor(store, Policy.from_file(SEED_POLICY), secret_key=IN_PROCESS_SECRET), other
        finally:
            other.close()
            store.close()


def test_a_key_revoked_through_the_api_is_refused_on_its_next_request(client: InProcessServer) -> None:
    admin = auth(client.admin_key)
    made = client.post("/v1/keys", json={"role": "agent", "name": "remembered"}, headers=admin)
    assert made.status_code == 201, made.text
    key_id, key = made.json()["id"], made.json()["key"]
    for _ in range(3):  # verified once, then answered from memory
        assert client.get("/v1/actions", headers=auth(key)).status_code == 200
    assert client.governor.cached_identity(key) is not None
    assert client.delete(f"/v1/keys/{key_id}", headers=admin).status_code == 200
    assert client.governor.cached_identity(key) is None
    refused = client.get("/v1/actions", headers=auth(key))
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "unauthorized"
    submit = client.post("/v1/actions", json={"tool": "refund", "operation": "process"}, headers=auth(key))
    assert submit.status_code == 401


def test_a_key_revoked_behind_the_servers_back_is_refused_once_the_bound_has_passed(
    two_processes: tuple[Governor, Store],
) -> None:
    g, other = two_processes
    ticks = Ticks()
    g.key_cache = KeyCache(ttl=2.0, clock=ticks)
    info, secret = service_keys.create_key(g.store, role=Role.AGENT, name="agent")
    assert g.authenticate(secret) is not None
    service_keys.revoke_key(other, info.id, actor="cli")  # no notice reaches g (SQLite; or a lost one)
    assert service_keys.authenticate(g.store, secret) is None  # the database already says so
    ticks.now += 1.9
    assert g.authenticate(secret) is not None  # remembered, within the bound
    ticks.now += 0.1
    assert g.authenticate(secret) is None  # the bound has passed: read again, refused
    assert g.cached_identity(secret) is None


def test_revoking_through_the_service_forgets_the_key_at_once(two_processes: tuple[Governor, Store]) -> None:
    g, _ = two_processes
    g.key_cache = KeyCache(ttl=3600.0, clock=Ticks())
    info, secret = service_keys.create_key(g.store, role=Role.APPROVER, name="approver")
    _, kept = service_keys.create_key(g.store, role=Role.APPROVER, name="kept")
    assert g.authenticate(secret) is not None and g.authenticate(kept) is not None
    g.revoke_key(info.id, actor="admin")
    assert g.authenticate(secret) is None
    assert g.cached_identity(kept) is not None  # other keys stay remembered


def test_a_revocation_heard_from_another_replica_forgets_the_key(two_processes: tuple[Governor, Store]) -> None:
    """Other replicas' revocations arrive as hub revocations (PostgreSQL change notices)."""
    g, _ = two_processes
    g.key_cache = KeyCache(ttl=3600.0, clock=Ticks())
    info, secret = service_keys.create_key(g.store, role=Role.AGENT, name="agent")
    assert g.authenticate(secret) is not None
    g.hub.revoke(info.id)
    assert g.cached_identity(secret) is None


def test_unknown_keys_are_never_remembered(two_processes: tuple[Governor, Store]) -> None:
    g, other = two_processes
    for _ in range(50):
        assert g.authenticate("fm_" + secrets.token_urlsafe(32)) is None
    assert len(g.key_cache._entries) == 0
    # A key created after it was first tried works at once: a refusal is not remembered.
    info, secret = service_keys.create_key(other, role=Role.AGENT, name="late")
    assert g.cached_identity(secret) is None
    identity = g.authenticate(secret)
    assert identity is not None and identity.key_id == info.id


def test_the_cache_holds_a_bounded_number_of_keys() -> None:
    from faramesh.model import Identity

    cache = KeyCache(ttl=60.0, max_entries=3, clock=Ticks())
    for n in range(5):
        cache.put(f"digest{n}", Identity(key_id=f"k{n}", role=Role.AGENT), verified_at=cache.now())
    assert [cache.get(f"digest{n}") is not None for n in range(5)] == [False, False, True, True, True]

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


def _remembered_then_revoked_behind_the_back(g: Governor, other: Store) -> tuple[Ticks, str]:
    """A key `g` verified and remembers (for 2 s of the returned clock), then revoked
    through `other` with no notice reaching `g` (SQLite; or a lost one)."""
    ticks = Ticks()
    g.key_cache = KeyCache(ttl=2.0, clock=ticks)
    info, secret = service_keys.create_key(g.store, role=Role.AGENT, name="agent")
    assert g.authenticate(secret) is not None
    service_keys.revoke_key(other, info.id, actor="cli")
    return ticks, secret


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
    ticks, secret = _remembered_then_revoked_behind_the_back(g, other)
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


# -- re-reading a key in use ahead of its expiry ------------------------------------------
def test_a_key_in_use_is_claimed_for_a_re_read_once_half_its_bound_has_passed() -> None:
    from faramesh.model import Identity

    ticks = Ticks()
    cache = KeyCache(ttl=2.0, clock=ticks)
    identity = Identity(key_id="k1", role=Role.AGENT)
    cache.put("d1", identity, verified_at=ticks())
    assert not cache.claim_refresh("d1")  # fresh
    ticks.now += 1.0
    assert cache.claim_refresh("d1")
    assert not cache.claim_refresh("d1")  # one re-read at a time
    assert cache.get("d1") == identity  # still answered from memory meanwhile
    cache.put("d1", identity, verified_at=ticks())  # the re-read landed
    assert not cache.claim_refresh("d1")
    ticks.now += 1.0
    assert cache.claim_refresh("d1")
    cache.release_refresh("d1")  # that re-read failed: the next caller may try again
    assert cache.claim_refresh("d1")
    assert not cache.claim_refresh("never-seen")


def test_a_read_that_began_before_an_eviction_does_not_put_the_key_back() -> None:
    from faramesh.model import Identity

    cache = KeyCache(ttl=60.0, clock=Ticks())
    identity = Identity(key_id="k1", role=Role.AGENT)
    token = cache.evictions()  # taken before the database is read
    cache.evict_key("k1")  # a revocation lands while the read runs
    cache.put("d1", identity, verified_at=cache.now(), evictions=token)
    assert cache.get("d1") is None
    cache.put("d1", identity, verified_at=cache.now(), evictions=cache.evictions())
    assert cache.get("d1") == identity


def test_a_re_read_keeps_a_key_in_use_remembered_past_its_first_bound(two_processes: tuple[Governor, Store]) -> None:
    g, _ = two_processes
    ticks = Ticks()
    g.key_cache = KeyCache(ttl=2.0, clock=ticks)
    _, secret = service_keys.create_key(g.store, role=Role.AGENT, name="busy")
    assert g.authenticate(secret) is not None
    ticks.now += 1.5
    assert g.remembered(secret)[1]
    g.refresh_key(secret)
    ticks.now += 1.5  # 3 s after the first read, 1.5 s after the re-read
    assert g.cached_identity(secret) is not None


def test_a_re_read_finds_a_key_revoked_behind_the_servers_back_within_half_the_bound(
    two_processes: tuple[Governor, Store],
) -> None:
    g, other = two_processes
    ticks, secret = _remembered_then_revoked_behind_the_back(g, other)
    ticks.now += 1.0
    identity, refresh_due = g.remembered(secret)
    assert identity is not None and refresh_due
    g.refresh_key(secret)
    assert g.cached_identity(secret) is None  # forgotten 1 s in, not 2
    assert g.authenticate(secret) is None


def test_a_request_answered_from_memory_re_reads_its_key_in_the_background(client: InProcessServer) -> None:
    """Over HTTP: the request that finds its key due a re-read is answered at once, and
    the re-read it started forgets a key revoked where no notice reached the server
    (on PostgreSQL the CLI's revocation is also announced, which forgets it too)."""
    from tests.inprocess import poll

    saved = client.governor.key_cache
    ticks = Ticks()
    client.governor.key_cache = KeyCache(ttl=2.0, clock=ticks)
    try:
        made = client.post("/v1/keys", json={"role": "agent", "name": "busy"}, headers=auth(client.admin_key))
        assert made.status_code == 201, made.text
        key_id, key = made.json()["id"], made.json()["key"]
        assert client.get("/v1/actions", headers=auth(key)).status_code == 200  # read, remembered
        other = Store(client.database_url)
        try:
            service_keys.revoke_key(other, key_id, actor="cli")
        finally:
            other.close()
        ticks.now += 1.2  # past half the bound, within it: the clock stays here
        assert poll(lambda: client.get("/v1/actions", headers=auth(key)).status_code == 401, timeout=10)
        assert client.governor.cached_identity(key) is None
    finally:
        client.governor.key_cache = saved

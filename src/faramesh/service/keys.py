"""API keys: the only code that creates or revokes one, and records it in the audit log.

Secrets are made and hashed by `faramesh.keys` (pure); the rows are moved by the
`KeyStore` (`faramesh.storage.repositories`). Each function runs its own transaction on
the store it is given, so the server, the dashboard, the CLI and `serve` all change keys
the same way.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable

import orjson

from faramesh import audit
from faramesh.errors import InvalidInput, NotFound
from faramesh.keys import KEY_PREFIX, MAX_NAME, MAX_SECRET, KeyInfo, hash_key, row_to_info, verify
from faramesh.model import Identity, Role, is_person_id
from faramesh.service.key_cache import KeyCache
from faramesh.storage import Store
from faramesh.storage.actions_repo import Connection
from faramesh.storage.notify import send_notice_if_shared
from faramesh.storage.repositories import Repositories
from faramesh.validation import check_agent_id, printable, refuse_nul


def _check_new_key(
    role: Role | str, name: object, agent_id: str | None, groups: Iterable[str]
) -> tuple[Role, str, str | None, tuple[str, ...]]:
    try:
        role = Role(role)
    except ValueError:
        raise InvalidInput("role must be one of agent, approver, admin", field="role") from None
    if agent_id is not None:
        # The same rule as for claimed ids: a bound id must be one an agent could claim.
        agent_id = check_agent_id(agent_id)
    if not isinstance(name, str) or len(name) > MAX_NAME:
        # The name also stands in as the agent id of an unbound key's actions (200 characters).
        raise InvalidInput(f"name must be a string of at most {MAX_NAME} characters", field="name")
    refuse_nul(name, "name")
    if not printable(name):  # it names the key on the dashboard, in logs and as an agent id
        raise InvalidInput("name must be printable characters (no control characters or line breaks)", field="name")
    listed = list(groups)
    refuse_nul(listed, "groups")
    if not all(isinstance(g, str) and printable(g) for g in listed):
        raise InvalidInput("groups must be printable characters (no control characters or line breaks)", field="groups")
    return role, name, agent_id, tuple(sorted({g.strip() for g in listed if g.strip()}))


# Hex letters no YAML number can hold ("b" and "e" can: 0b101, 1e5).
_NEVER_IN_A_NUMBER = frozenset("acdf")


def new_key_id() -> str:
    """16 hex digits with at least one of a, c, d, f. Operators paste key ids unquoted
    into YAML files (the Slack users map), and YAML reads some hex strings as numbers
    (all digits; 1e5; 0b101; with a leading 0, as octal in YAML 1.1), which then no
    longer name the key. About 1 draw in 100 is drawn again."""
    while True:
        key_id = secrets.token_hex(8)
        if not _NEVER_IN_A_NUMBER.isdisjoint(key_id):
            return key_id


def create_key(
    store: Store,
    *,
    role: Role | str,
    name: str = "",
    agent_id: str | None = None,
    groups: Iterable[str] = (),
    actor: str | Identity | None = None,
    now: float | None = None,
) -> tuple[KeyInfo, str]:
    """Create a key; return its info and the secret (shown once, never stored)."""
    role, name, agent_id, group_set = _check_new_key(role, name, agent_id, groups)
    ts = time.time() if now is None else now
    key_id = new_key_id()
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    digest = hash_key(secret)

    def txn(conn: Connection) -> None:
        Repositories.sql(conn).keys.insert(
            key_id=key_id,
            name=name,
            role=role.value,
            agent_id=agent_id,
            groups_json=orjson.dumps(list(group_set)).decode(),
            key_hash=digest,
            prefix=secret[:10],
            created_at=ts,
        )
        audit.append(
            conn,
            event="key.created",
            ts=ts,
            actor=actor,
            data={
                "key_id": key_id,
                "name": name,
                "role": role.value,
                "agent_id": agent_id,
                "groups": list(group_set),
                # The digest (never the secret): verify can then tell if a stored digest was swapped.
                "key_hash": digest,
            },
        )

    store.write(txn)
    return KeyInfo(key_id, name, role, agent_id, group_set, secret[:10], ts, None), secret


def revoke_key(store: Store, key_id: str, *, actor: str | Identity | None = None, now: float | None = None) -> KeyInfo:
    """Revoke a key (revoking a revoked key changes nothing and records nothing).

    On PostgreSQL the revocation is also announced to every server process on the
    database once it commits (whoever revokes: API, dashboard or CLI), so they close
    the key's open event streams and waits."""
    refuse_nul(key_id, "key_id")
    ts = time.time() if now is None else now

    def txn(conn: Connection) -> KeyInfo:
        repos = Repositories.sql(conn)
        changed = repos.keys.revoke(key_id, ts)
        row = repos.keys.get(key_id)
        if row is None:
            raise NotFound(f"no key with id {key_id!r}", field="key_id")
        if changed:
            seq = audit.append(conn, event="key.revoked", ts=ts, actor=actor, data={"key_id": key_id})
            notice = {"type": "key.revoked", "action_id": None, "key_id": key_id, "seq": seq}
            send_notice_if_shared(conn, notice | {"origin": store.instance_id})
        return row_to_info(row)

    return store.write(txn)


def list_keys(store: Store) -> list[KeyInfo]:
    """Every key (never a secret), oldest first."""
    return [row_to_info(r) for r in store.read(lambda conn: Repositories.sql(conn).keys.list_all())]


def count_active_keys(store: Store, role: Role | None = None) -> int:
    return store.read(lambda conn: Repositories.sql(conn).keys.count_active(role.value if role is not None else None))


def authenticate(store: Store, secret: str) -> Identity | None:
    """The identity for a presented key, or None when it is unknown or revoked."""
    return store.read(lambda conn: verify(conn, secret))


def cached_identity(cache: KeyCache, secret: str) -> Identity | None:
    """The identity `cache` holds for this secret, if it verified it moments ago."""
    if not secret or len(secret) > MAX_SECRET:
        return None
    return cache.get(hash_key(secret))


def authenticate_into(store: Store, secret: str, cache: KeyCache) -> Identity | None:
    """`authenticate`, remembering a key that verified in `cache`."""
    # Both read before the database: a revocation during the read keeps its bound, and
    # one evicted meanwhile is not put back.
    verified_at, evictions = cache.now(), cache.evictions()
    identity = authenticate(store, secret)
    if identity is not None:
        cache.put(hash_key(secret), identity, verified_at, evictions)
    return identity


def remembered(cache: KeyCache, secret: str) -> tuple[Identity | None, bool]:
    """`cached_identity`, and whether this caller should re-verify the key in the
    background now (see `KeyCache.lookup`): the secret hashed once."""
    if not secret or len(secret) > MAX_SECRET:
        return None, False
    return cache.lookup(hash_key(secret))


def refresh_into(store: Store, secret: str, cache: KeyCache) -> None:
    """Re-verify a remembered key ahead of its expiry (after `remembered` said so): remembered
    afresh when it is still valid, forgotten at once when it was revoked or deleted. A
    failed read raises and leaves the entry to expire when it would have."""
    digest = hash_key(secret)
    verified_at, evictions = cache.now(), cache.evictions()
    try:
        identity = authenticate(store, secret)
    except BaseException:
        cache.release_refresh(digest)
        raise
    if identity is None:
        cache.drop(digest)
    else:
        cache.put(digest, identity, verified_at, evictions)


def identity_for_key(store: Store, key_id: str) -> Identity | None:
    """The identity of an active key named by id (e.g. the key a Slack user is mapped to)."""
    row = store.read(lambda conn: Repositories.sql(conn).keys.get_active(key_id))
    return row_to_info(row).identity() if row is not None else None


def revoked_among(store: Store, key_ids: set[str]) -> set[str]:
    """Which of these key ids are revoked (or no longer exist): one read. People's ids are
    not keys: their sessions are re-checked by the dashboard instead."""
    keys_only = {k for k in key_ids if not is_person_id(k)}
    if not keys_only:
        return set()
    return keys_only - store.read(lambda conn: Repositories.sql(conn).keys.active_among(keys_only))


def still_active(conn: Connection, key_id: str) -> bool:
    """Inside a transaction: whether the key is still active (one primary-key read)."""
    return Repositories.sql(conn).keys.is_active(key_id)

"""API keys: random secrets shown once, stored only as SHA-256 digests.

Keys carry 256 bits of randomness, so a plain SHA-256 digest is safe to store and
lets a key be found by an index lookup; the comparison that grants access is done on
digests with `hmac.compare_digest`, so timing reveals nothing about stored keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from faramesh import audit
from faramesh.errors import InvalidInput, NotFound
from faramesh.model import Identity, Role
from faramesh.storage.notify import send_notice_if_shared
from faramesh.storage.schema import api_keys
from faramesh.validation import check_agent_id, refuse_nul

KEY_PREFIX = "fm_"
MAX_NAME = 200


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    role: Role
    agent_id: str | None
    groups: tuple[str, ...]
    prefix: str
    created_at: float
    revoked_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "agent_id": self.agent_id,
            "groups": list(self.groups),
            "prefix": self.prefix,
            "created_at": self.created_at,
            "revoked": self.revoked_at is not None,
            "revoked_at": self.revoked_at,
        }

    def identity(self) -> Identity:
        return Identity(key_id=self.id, role=self.role, name=self.name, agent_id=self.agent_id, groups=self.groups)


def _row_to_info(row: Any) -> KeyInfo:
    return KeyInfo(
        id=row.id,
        name=row.name or "",
        role=Role(row.role),
        agent_id=row.agent_id,
        groups=tuple(orjson.loads(row.groups or "[]")),
        prefix=row.prefix,
        created_at=float(row.created_at),
        revoked_at=float(row.revoked_at) if row.revoked_at is not None else None,
    )


def create_key(
    conn: Connection,
    *,
    role: Role | str,
    name: str = "",
    agent_id: str | None = None,
    groups: tuple[str, ...] | list[str] = (),
    actor: str | None = None,
    now: float | None = None,
) -> tuple[KeyInfo, str]:
    """Create a key inside the caller's transaction; return its info and the secret (shown once)."""
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
    refuse_nul(list(groups), "groups")
    groups = tuple(sorted({g.strip() for g in groups if g.strip()}))
    ts = time.time() if now is None else now
    key_id = secrets.token_hex(8)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        api_keys.insert().values(
            id=key_id,
            name=name,
            role=role.value,
            agent_id=agent_id,
            groups=orjson.dumps(list(groups)).decode(),
            key_hash=hash_key(secret),
            prefix=secret[:10],
            created_at=ts,
            revoked_at=None,
        )
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
            "groups": list(groups),
            # The digest (never the secret): verify can then tell if a stored digest was swapped.
            "key_hash": hash_key(secret),
        },
    )
    info = KeyInfo(key_id, name, role, agent_id, groups, secret[:10], ts, None)
    return info, secret


def revoke_key(
    conn: Connection,
    key_id: str,
    *,
    actor: str | None = None,
    now: float | None = None,
    origin: str | None = None,
) -> KeyInfo:
    """Revoke a key inside the caller's transaction.

    On PostgreSQL the revocation is also announced to every server process on the
    database once it commits (whoever revokes: API, dashboard or CLI), so they close
    the key's open event streams and waits. `origin` is the revoking store's
    instance id, when a server revokes."""
    refuse_nul(key_id, "key_id")
    ts = time.time() if now is None else now
    result = conn.execute(
        update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=ts)
    )
    row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    if row is None:
        raise NotFound(f"no key with id {key_id!r}", field="key_id")
    if result.rowcount:
        seq = audit.append(conn, event="key.revoked", ts=ts, actor=actor, data={"key_id": key_id})
        send_notice_if_shared(
            conn, {"type": "key.revoked", "action_id": None, "key_id": key_id, "seq": seq, "origin": origin}
        )
    return _row_to_info(row)


def revoked_among(conn: Connection, key_ids: set[str]) -> set[str]:
    """Which of these key ids are revoked (or no longer exist)."""
    wanted = sorted(key_ids)
    active: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = conn.execute(
            select(api_keys.c.id).where(api_keys.c.id.in_(chunk), api_keys.c.revoked_at.is_(None))
        ).all()
        active.update(r.id for r in rows)
    return key_ids - active


def list_keys(conn: Connection) -> list[KeyInfo]:
    rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
    return [_row_to_info(r) for r in rows]


def count_active_keys(conn: Connection, role: Role | None = None) -> int:
    query = select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None))
    if role is not None:
        query = query.where(api_keys.c.role == role.value)
    return len(conn.execute(query).all())


# Built once: every request runs it, and a prebuilt statement skips SQLAlchemy's per-call work.
_SELECT_BY_HASH = select(api_keys).where(api_keys.c.key_hash == bindparam("key_hash"))


def authenticate(conn: Connection, secret: str) -> Identity | None:
    """The identity for a presented key, or None when it is unknown or revoked."""
    if not secret or len(secret) > 512:
        return None
    digest = hash_key(secret)
    row = conn.execute(_SELECT_BY_HASH, {"key_hash": digest}).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
        return None
    return _row_to_info(row).identity()

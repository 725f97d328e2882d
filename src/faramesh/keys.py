"""API keys: random secrets shown once, stored only as SHA-256 digests.

Keys carry 256 bits of randomness, so a plain SHA-256 digest is safe to store and
lets a key be found by an index lookup; the comparison that grants access is done on
digests with `hmac.compare_digest`, so timing reveals nothing about stored keys.

Creating and revoking keys is the service's job (`faramesh.service.keys`), so every
change is audited one way; this module holds what a key is and how one is verified.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson

from faramesh.model import Identity, Role
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories

KEY_PREFIX = "fm_"
MAX_NAME = 200
MAX_SECRET = 512


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


def row_to_info(row: Any) -> KeyInfo:
    """A stored api_keys row as a KeyInfo (the one place a key row becomes an identity)."""
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


def matches(row: Any, secret: str) -> bool:
    """Whether an active stored key is the one this secret names (compared on digests)."""
    return row is not None and hmac.compare_digest(row.key_hash, hash_key(secret)) and row.revoked_at is None


def verify(conn: Connection, secret: str) -> Identity | None:
    """The identity for a presented key, or None when it is unknown or revoked."""
    if not secret or len(secret) > MAX_SECRET:
        return None
    row = Repositories.sql(conn).keys.by_hash(hash_key(secret))
    return row_to_info(row).identity() if matches(row, secret) else None


# The name callers use inside a read: `store.read(lambda conn: keys.authenticate(conn, key))`.
authenticate = verify

"""The permit_keys table's SQL: the Ed25519 keys that sign permits.

`faramesh.service.permit_keys` generates, encrypts and rotates them; this module only
moves rows. One row has `active = 1` (a unique column), so two replicas that both find
no key on an empty database cannot both install one: the second insert raises
`DuplicateRow` and that replica reads the winner's key.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Connection

from faramesh.storage.schema import permit_keys

__all__ = ["Connection", "PermitKeyRow", "active", "all_keys", "insert_active", "published", "retire_active"]

PermitKeyRow = Any  # a row with the permit_keys columns as attributes


def active(conn: Connection) -> PermitKeyRow | None:
    """The key that signs new permits, if one was made."""
    return conn.execute(select(permit_keys).where(permit_keys.c.active == 1)).first()


def published(conn: Connection, now: float) -> list[PermitKeyRow]:
    """The keys whose public half belongs in the JWKS at `now`: the active one, and retired
    ones until their last permit expired. Newest first."""
    query = (
        select(permit_keys)
        .where(or_(permit_keys.c.active == 1, permit_keys.c.publish_until > now))
        .order_by(permit_keys.c.created_at.desc())
    )
    return list(conn.execute(query).all())


def all_keys(conn: Connection) -> list[PermitKeyRow]:
    """Every key ever made, newest first."""
    return list(conn.execute(select(permit_keys).order_by(permit_keys.c.created_at.desc())).all())


def insert_active(
    conn: Connection, *, kid: str, public_jwk: str, private_key: str, secret_id: str, created_at: float
) -> None:
    """Install a new signing key (raises DuplicateRow when another one is active)."""
    conn.execute(
        permit_keys.insert().values(
            kid=kid,
            public_jwk=public_jwk,
            private_key=private_key,
            secret_id=secret_id,
            active=1,
            created_at=created_at,
            retired_at=None,
            publish_until=None,
        )
    )


def retire_active(conn: Connection, *, now: float, publish_until: float) -> str | None:
    """Stop the active key signing (its public key stays published until `publish_until`);
    returns its kid, or None when no key was active."""
    row = conn.execute(select(permit_keys.c.kid).where(permit_keys.c.active == 1).with_for_update()).first()
    if row is None:
        return None
    conn.execute(
        update(permit_keys)
        .where(permit_keys.c.kid == row.kid)
        .values(active=None, retired_at=now, publish_until=publish_until)
    )
    return str(row.kid)

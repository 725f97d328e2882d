"""People who sign in with single sign-on: the only code that records them, opens and ends
their dashboard sessions, and audits it.

What the identity provider says (who, which groups) is checked by the server's OpenID
Connect client before it gets here; this module applies the rules of `faramesh.sso`
(groups -> role, allowed email domains) at every sign-in and every re-check, so a person
removed from their groups loses access at the next check, everywhere: the dashboard,
chat approvals, and votes already on their way (`still_active`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from faramesh import audit
from faramesh.model import Identity, Person, Role, is_person_id
from faramesh.sso import SsoConfig
from faramesh.storage import Store, people_repo
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories

__all__ = [
    "CHAT_CONFIRMED_WITHIN",
    "Claims",
    "PersonSession",
    "claim_recheck",
    "load_session",
    "person_for_chat",
    "postpone_recheck",
    "recheck",
    "session_key",
    "sign_in",
    "sign_out",
    "still_active",
]

SYSTEM_ACTOR = "system:sso"
# Chat approvals use the groups the provider confirmed at the person's last sign-in or
# re-check; older than this, a press is refused until the person signs in again.
CHAT_CONFIRMED_WITHIN = 24 * 3600.0
PURGE_AFTER = 24 * 3600.0  # ended and expired sessions are forgotten a day after they expire


def session_key(session_id: str) -> str:
    """The stored id of a session: the SHA-256 of the random id its cookie carries."""
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Claims:
    """What the identity provider said about a person at sign-in or re-check."""

    person: Person
    email_verified: bool
    groups: tuple[str, ...]


@dataclass(frozen=True)
class PersonSession:
    key: str
    identity: Identity
    expires_at: float
    checked_at: float
    version: int
    tokens: str | None  # sealed by the server; opaque here


def _identity(row: Any) -> Identity:
    person = Person(issuer=row.issuer, subject=row.subject, email=row.email, name=row.name or "")
    return Identity(
        key_id=person.id,
        role=Role(row.role),
        name=person.name,
        groups=tuple(orjson.loads(row.groups or "[]")),
        person=person,
    )


def _access(config: SsoConfig, claims: Claims) -> tuple[Role | None, str]:
    """The role the claims give now, and if none, why (shown to the person, and audited)."""
    if not config.email_allowed(claims.person, claims.email_verified):
        domains = ", ".join(sorted(config.email_domains))
        return None, f"sign-in is limited to verified email addresses at {domains}"
    role = config.role_for(claims.groups)
    if role is None:
        return None, "not a member of any group that may use Faramesh"
    return role, ""


def _record(conn: Connection, claims: Claims, role: Role | None, now: float) -> str | None:
    p = claims.person
    return people_repo.upsert_person(
        conn,
        person_id=p.id,
        issuer=p.issuer,
        subject=p.subject,
        email=p.email,
        email_verified=claims.email_verified,
        name=p.name,
        role=role.value if role is not None else None,
        groups_json=orjson.dumps(list(claims.groups)).decode(),
        now=now,
    )


def _remove_access(conn: Connection, claims: Claims, why: str, before: str | None, now: float) -> None:
    """The person has no access now: end their sessions, and audit it if they had access."""
    ended = people_repo.end_person_sessions(conn, claims.person.id, now=now, reason=why)
    if before is not None or ended:
        audit.append(
            conn,
            event="person.access_removed",
            ts=now,
            actor=SYSTEM_ACTOR,
            data={"person": claims.person.to_dict(), "reason": why, "groups": list(claims.groups), "role": before},
        )


def sign_in(
    store: Store,
    config: SsoConfig,
    claims: Claims,
    *,
    session_id: str,
    tokens: str | None,
    now: float,
) -> tuple[Identity | None, str]:
    """Record a sign-in: (the person's identity, "") and a new session stored under
    `session_id`; or (None, why) when their groups or email give them no access."""
    role, why = _access(config, claims)

    def txn(conn: Connection) -> Identity | None:
        before = _record(conn, claims, role, now)
        if role is None:
            _remove_access(conn, claims, why, before, now)
            return None
        people_repo.purge_sessions(conn, before=now - PURGE_AFTER)
        people_repo.insert_session(
            conn,
            session_id=session_key(session_id),
            person_id=claims.person.id,
            now=now,
            expires_at=now + config.session_lifetime,
            tokens=tokens,
        )
        identity = Identity(
            key_id=claims.person.id, role=role, name=claims.person.name, groups=claims.groups, person=claims.person
        )
        audit.append(
            conn,
            event="person.signed_in",
            ts=now,
            actor=identity,
            data={"role": role.value, "groups": list(claims.groups), "email_verified": claims.email_verified},
        )
        return identity

    return store.write(txn), why


def load_session(store: Store, session_id: str, now: float) -> PersonSession | None:
    """The open session with this id, with its person's identity as last checked; None when
    it is unknown, ended or expired, or the person has no access now."""
    row = store.read(lambda conn: people_repo.session_and_person(conn, session_key(session_id)))
    if row is None or row.ended_at is not None or row.expires_at <= now or row.role is None:
        return None
    return PersonSession(
        key=row.id,
        identity=_identity(row),
        expires_at=float(row.expires_at),
        checked_at=float(row.checked_at),
        version=int(row.version),
        tokens=row.tokens,
    )


def claim_recheck(store: Store, session: PersonSession, now: float) -> bool:
    """Take the due re-check of `session`: True for exactly one of the requests (on any
    replica) that found it due; the others go on with the groups as last checked."""
    return store.write(lambda conn: people_repo.claim_recheck(conn, session.key, version=session.version, now=now))


def postpone_recheck(store: Store, session: PersonSession) -> None:
    """The provider could not be asked (unreachable): keep the session, and have the next
    request try again (this one is refused by the caller)."""
    store.write(lambda conn: people_repo.store_check(conn, session.key, checked_at=session.checked_at, tokens=None))


def recheck(
    store: Store,
    config: SsoConfig,
    session: PersonSession,
    claims: Claims | None,
    *,
    tokens: str | None,
    why: str = "",
    now: float,
) -> tuple[Identity | None, str]:
    """Apply a re-check with the provider: the identity as it is now and "", or (None, why)
    when the session ends (`claims` None: the provider refused to renew it; else the
    groups or email no longer give access, which ends all the person's sessions)."""
    old = session.identity
    role: Role | None = None
    if claims is not None:
        role, reason = _access(config, claims)
        why = why or reason
        if claims.person.id != old.key_id:
            role, why = None, "the identity provider named a different person"

    def txn(conn: Connection) -> Identity | None:
        if claims is None or claims.person.id != old.key_id:
            people_repo.end_session(conn, session.key, now=now, reason=why)
            return None
        before = _record(conn, claims, role, now)
        if role is None:
            _remove_access(conn, claims, why, before, now)
            return None
        people_repo.store_check(conn, session.key, checked_at=now, tokens=tokens)
        identity = Identity(
            key_id=claims.person.id, role=role, name=claims.person.name, groups=claims.groups, person=claims.person
        )
        if before != role.value:
            audit.append(
                conn,
                event="person.role_changed",
                ts=now,
                actor=SYSTEM_ACTOR,
                data={"person": claims.person.to_dict(), "role": role.value, "previous": before},
            )
        return identity

    return store.write(txn), why


def sign_out(store: Store, session_id: str, identity: Identity | None, now: float) -> str | None:
    """End the session (logging out); returns its sealed tokens (for the provider's
    end-session request), or None when it had ended already."""

    def txn(conn: Connection) -> str | None:
        row = people_repo.end_session(conn, session_key(session_id), now=now, reason="signed out")
        if row is None:
            return None
        if identity is not None:
            audit.append(conn, event="person.signed_out", ts=now, actor=identity, data={})
        return str(row.tokens) if row.tokens is not None else ""

    return store.write(txn)


def person_for_chat(store: Store, email: str, now: float) -> tuple[Identity | None, str]:
    """The person a chat account's verified email belongs to, if they may decide now: their
    provider vouched for that email, their groups give them a role, and were confirmed
    within CHAT_CONFIRMED_WITHIN. Otherwise (None, why)."""
    rows = store.read(lambda conn: people_repo.people_with_email(conn, email.strip().lower()))
    if not rows:
        return None, "no one with this verified email has signed in to Faramesh"
    if len({r.id for r in rows}) > 1:
        return None, "several people have this email; decide in the dashboard"
    row = rows[0]
    if row.role is None:
        return None, "this person is in no group that may decide"
    if now - float(row.checked_at) > CHAT_CONFIRMED_WITHIN:
        return None, "this person has not signed in to the Faramesh dashboard for a day; sign in there once"
    return _identity(row), ""


def still_active(conn: Connection, identity: Identity) -> bool:
    """Inside a transaction: whether the caller may still act now (an API key not revoked;
    a person whose groups still give them a role)."""
    if is_person_id(identity.key_id):
        return people_repo.role_for_update(conn, identity.key_id) is not None
    return Repositories.sql(conn).keys.is_active(identity.key_id)

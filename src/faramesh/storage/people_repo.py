"""The SQL for people (single sign-on) and their dashboard sessions.

`faramesh.service.people` decides who may sign in, when a session ends and what is
audited; this module only moves rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from faramesh.storage.schema import people, person_sessions

__all__ = [
    "Connection",
    "claim_recheck",
    "end_person_sessions",
    "end_session",
    "get_person",
    "insert_session",
    "people_with_email",
    "purge_sessions",
    "role_for_update",
    "session_and_person",
    "set_access",
    "store_check",
    "upsert_person",
]

Row = Any  # a row with the table's columns as attributes

# FOR SHARE (PostgreSQL): a re-check that removes the person's access waits for a vote
# that read it, so the two are ordered one way or the other (as for API keys).
_ROLE = select(people.c.role).where(people.c.id == bindparam("person_id")).with_for_update(read=True)


def upsert_person(
    conn: Connection,
    *,
    person_id: str,
    issuer: str,
    subject: str,
    email: str | None,
    email_verified: bool,
    name: str,
    role: str | None,
    groups_json: str,
    now: float,
) -> str | None:
    """Record what the provider says about a person now; returns their role before
    (None for a new person, or one who had no access)."""
    values = {
        "email": email,
        "email_verified": email_verified,
        "name": name,
        "role": role,
        "groups": groups_json,
        "checked_at": now,
    }
    for _ in range(2):
        before = conn.execute(select(people.c.role).where(people.c.id == person_id).with_for_update()).first()
        if before is not None:
            conn.execute(update(people).where(people.c.id == person_id).values(**values))
            return str(before.role) if before.role is not None else None
        try:
            with conn.begin_nested():  # two first sign-ins at once: the second updates instead
                conn.execute(
                    people.insert().values(id=person_id, issuer=issuer, subject=subject, created_at=now, **values)
                )
            return None
        except IntegrityError:
            continue
    raise RuntimeError("could not record the person")  # pragma: no cover - the row exists after a conflict


def set_access(conn: Connection, person_id: str, *, role: str | None, groups_json: str, now: float) -> None:
    conn.execute(update(people).where(people.c.id == person_id).values(role=role, groups=groups_json, checked_at=now))


def get_person(conn: Connection, person_id: str) -> Row | None:
    return conn.execute(select(people).where(people.c.id == person_id)).first()


def role_for_update(conn: Connection, person_id: str) -> str | None:
    """Inside a transaction: the person's current role (None: no access, or unknown)."""
    row = conn.execute(_ROLE, {"person_id": person_id}).first()
    return str(row.role) if row is not None and row.role is not None else None


def people_with_email(conn: Connection, email: str) -> list[Row]:
    """People whose provider vouched for this email (email_verified), most recently checked first."""
    query = (
        select(people)
        .where(people.c.email == email, people.c.email_verified.is_(True))
        .order_by(people.c.checked_at.desc())
    )
    return list(conn.execute(query).all())


def insert_session(
    conn: Connection, *, session_id: str, person_id: str, now: float, expires_at: float, tokens: str | None
) -> None:
    conn.execute(
        person_sessions.insert().values(
            id=session_id,
            person_id=person_id,
            created_at=now,
            expires_at=expires_at,
            checked_at=now,
            tokens=tokens,
            version=1,
        )
    )


_SESSION_AND_PERSON = (
    select(
        person_sessions.c.id,
        person_sessions.c.person_id,
        person_sessions.c.created_at,
        person_sessions.c.expires_at,
        person_sessions.c.checked_at,
        person_sessions.c.tokens,
        person_sessions.c.ended_at,
        person_sessions.c.version,
        people.c.issuer,
        people.c.subject,
        people.c.email,
        people.c.name,
        people.c.role,
        people.c.groups,
    )
    .select_from(person_sessions.join(people, people.c.id == person_sessions.c.person_id))
    .where(person_sessions.c.id == bindparam("session_id"))
)


def session_and_person(conn: Connection, session_id: str) -> Row | None:
    """The session with its person's columns, or None."""
    return conn.execute(_SESSION_AND_PERSON, {"session_id": session_id}).first()


def claim_recheck(conn: Connection, session_id: str, *, version: int, now: float) -> bool:
    """Take the re-check of an open session (compare-and-set on its version): of several
    requests (or replicas) that find it due, one talks to the provider."""
    result = conn.execute(
        update(person_sessions)
        .where(
            person_sessions.c.id == session_id,
            person_sessions.c.version == version,
            person_sessions.c.ended_at.is_(None),
        )
        .values(version=version + 1, checked_at=now)
    )
    return result.rowcount == 1


def store_check(conn: Connection, session_id: str, *, checked_at: float, tokens: str | None) -> None:
    """The outcome of a re-check (or, to retry it soon, the time of the one before)."""
    values: dict[str, Any] = {"checked_at": checked_at}
    if tokens is not None:
        values["tokens"] = tokens
    conn.execute(
        update(person_sessions)
        .where(person_sessions.c.id == session_id, person_sessions.c.ended_at.is_(None))
        .values(**values)
    )


def end_session(conn: Connection, session_id: str, *, now: float, reason: str) -> Row | None:
    """End an open session; returns it as it was (None when unknown or already ended)."""
    row = conn.execute(select(person_sessions).where(person_sessions.c.id == session_id).with_for_update()).first()
    if row is None or row.ended_at is not None:
        return None
    conn.execute(
        update(person_sessions)
        .where(person_sessions.c.id == session_id)
        .values(ended_at=now, ended_reason=reason, tokens=None, version=row.version + 1)
    )
    return row


def end_person_sessions(conn: Connection, person_id: str, *, now: float, reason: str) -> int:
    """End every open session of a person (their access was removed)."""
    result = conn.execute(
        update(person_sessions)
        .where(person_sessions.c.person_id == person_id, person_sessions.c.ended_at.is_(None))
        .values(ended_at=now, ended_reason=reason, tokens=None, version=person_sessions.c.version + 1)
    )
    return int(result.rowcount)


def purge_sessions(conn: Connection, *, before: float) -> int:
    """Forget sessions that expired before `before` (their tokens went when they ended)."""
    return int(conn.execute(delete(person_sessions).where(person_sessions.c.expires_at < before)).rowcount)

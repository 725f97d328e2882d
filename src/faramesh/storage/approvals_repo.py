"""The approvals table's SQL: one row per vote.

`faramesh.service.approvals` decides which votes count; this module only moves rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from faramesh.storage.schema import approvals

__all__ = ["Connection", "VoteRow", "insert_vote", "votes_of", "votes_on"]

VoteRow = Any  # a row with the approvals columns as attributes


def insert_vote(
    conn: Connection,
    *,
    action_id: str,
    approver: str,
    approver_label: str,
    approve: bool,
    reason: str | None,
    request_hash: str,
    created_at: float,
    approver_person: str | None = None,
) -> bool:
    """Record a vote; False (and nothing written) when this approver already voted on
    these exact arguments. Runs in a SAVEPOINT so the caller's transaction goes on."""
    try:
        with conn.begin_nested():
            conn.execute(
                approvals.insert().values(
                    action_id=action_id,
                    approver=approver,
                    approver_label=approver_label,
                    approver_person=approver_person,
                    approve=approve,
                    reason=reason,
                    request_hash=request_hash,
                    created_at=created_at,
                )
            )
    except IntegrityError:
        return False
    return True


def votes_on(conn: Connection, action_id: str) -> list[VoteRow]:
    """Every vote on one action (all columns), in the order they were cast."""
    return list(
        conn.execute(select(approvals).where(approvals.c.action_id == action_id).order_by(approvals.c.id)).all()
    )


def votes_of(conn: Connection, ids: Sequence[str]) -> dict[str, list[VoteRow]]:
    """The votes on each of `ids` (action_id, approver, approve and request_hash only), for counting."""
    found: dict[str, list[VoteRow]] = {i: [] for i in ids}
    if ids:
        query = select(
            approvals.c.action_id, approvals.c.approver, approvals.c.approve, approvals.c.request_hash
        ).where(approvals.c.action_id.in_(list(ids)))
        for vote in conn.execute(query).all():
            found[vote.action_id].append(vote)
    return found

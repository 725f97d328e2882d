"""The approval_nudges and chat_messages tables' SQL: reminders and escalations of held
actions (each sent once), and the chat messages a held action was posted as.

`faramesh.service.nudges` decides when a held action is due a reminder or an escalation;
`faramesh.notify.slack_app` posts and updates the chat messages. This module only moves rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from faramesh.storage.schema import actions, approval_nudges, chat_messages

__all__ = [
    "ChatMessageRow",
    "Connection",
    "claim_message",
    "due_for",
    "messages_of",
    "record_nudge",
    "release_message",
    "set_message_ts",
]

ChatMessageRow = Any  # a row with the chat_messages columns as attributes


def _insert_ignoring_duplicates(conn: Connection, table: Any, values: dict[str, Any]) -> bool:
    """Insert one row unless one with the same unique key exists; True if this one was."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    # RETURNING says whether a row went in (rowcount is not reliable for this on every driver).
    stmt = dialect.insert(table).values(**values).on_conflict_do_nothing().returning(table.c.id)
    return conn.execute(stmt).first() is not None


# -- reminders and escalations ---------------------------------------------------------
def due_for(conn: Connection, *, status: str, rule_id: str, created_before: float, kind: str, limit: int) -> list[str]:
    """Ids of `status` actions of `rule_id` created before the time given, not yet sent this `kind` of nudge."""
    sent = exists().where(approval_nudges.c.action_id == actions.c.id, approval_nudges.c.kind == kind)
    query = (
        select(actions.c.id)
        .where(
            actions.c.status == status,
            actions.c.rule_id == rule_id,
            actions.c.created_at <= created_before,
            ~sent,
        )
        .order_by(actions.c.created_at)
        .limit(limit)
    )
    return [row[0] for row in conn.execute(query).all()]


def record_nudge(conn: Connection, *, action_id: str, kind: str, at: float) -> bool:
    """Take the nudge for this action: True for exactly one caller, however many race."""
    return _insert_ignoring_duplicates(conn, approval_nudges, {"action_id": action_id, "kind": kind, "at": at})


# -- chat messages ----------------------------------------------------------------------
def claim_message(conn: Connection, *, action_id: str, channel: str, now: float) -> bool:
    """Take the posting of this action's message in `channel`: True for exactly one caller."""
    values = {"action_id": action_id, "channel": channel, "ts": None, "created_at": now, "updated_at": now}
    return _insert_ignoring_duplicates(conn, chat_messages, values)


def set_message_ts(conn: Connection, *, action_id: str, channel: str, ts: str, now: float) -> None:
    conn.execute(
        update(chat_messages)
        .where(chat_messages.c.action_id == action_id, chat_messages.c.channel == channel)
        .values(ts=ts, updated_at=now)
    )


def release_message(conn: Connection, *, action_id: str, channel: str) -> None:
    """Give up a claim whose post failed, so a later attempt may post it."""
    conn.execute(
        chat_messages.delete().where(
            chat_messages.c.action_id == action_id, chat_messages.c.channel == channel, chat_messages.c.ts.is_(None)
        )
    )


def messages_of(conn: Connection, action_id: str) -> list[ChatMessageRow]:
    """The posted messages of an action (those with a ts), oldest first."""
    return list(
        conn.execute(
            select(chat_messages)
            .where(chat_messages.c.action_id == action_id, chat_messages.c.ts.is_not(None))
            .order_by(chat_messages.c.id)
        ).all()
    )

"""Which action a request names and whether its caller may see it."""

from __future__ import annotations

from typing import Any

from faramesh.errors import NotFound
from faramesh.model import Identity, Role
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories
from faramesh.validation import refuse_nul

MAX_ACTION_ID = 64  # the column's width


def checked_id(action_id: Any) -> str:
    """The action id as given, or NotFound for one no action can have."""
    if not isinstance(action_id, str) or not action_id or len(action_id) > MAX_ACTION_ID:
        raise NotFound("no such action", field="id")
    refuse_nul(action_id, "id")
    return action_id


def load(conn: Connection, action_id: str) -> Any:
    """The action's row, or None; NotFound for an id no action can have."""
    return Repositories.sql(conn).actions.get(checked_id(action_id))


def visible(row: Any, identity: Identity) -> bool:
    """Agents see only their own actions; approvers and admins see all."""
    return identity.role is not Role.AGENT or row.submitted_by == identity.key_id


def not_found(action_id: str) -> NotFound:
    return NotFound(f"no action with id {action_id!r}", field="id")

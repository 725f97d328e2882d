"""Reads: one action, a page of actions, an action's events; nothing here changes state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faramesh import audit
from faramesh.audit import AuditRecord
from faramesh.errors import InvalidInput
from faramesh.model import Identity, Role, Status
from faramesh.policy import Effect
from faramesh.service import access, approvals
from faramesh.storage import Store, approvals_repo
from faramesh.storage.repositories import Repositories
from faramesh.storage.rows import ActionFilter
from faramesh.validation import refuse_nul

MAX_PAGE = 500


def get(store: Store, identity: Identity, action_id: str) -> tuple[Any, list[Any]]:
    """The action (if the caller may see it) and every vote on it."""
    row = store.read(lambda conn: access.load(conn, action_id))
    if row is None or not access.visible(row, identity):
        raise access.not_found(action_id)
    return row, store.read(lambda conn: approvals_repo.votes_on(conn, action_id))


def get_status(store: Store, identity: Identity, action_id: str) -> Status:
    row = store.read(lambda conn: access.load(conn, action_id))
    if row is None or not access.visible(row, identity):
        raise access.not_found(action_id)
    return Status(row.status)


def counted(store: Store, row: Any) -> int | None:
    """The votes that count for a held action now; None for actions that never needed one."""
    if row.decision != Effect.REQUIRE_APPROVAL.value:
        return None
    return store.read(lambda conn: approvals.counted(conn, [row]))[row.id]


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    counted: dict[str, int]  # for the held actions among rows
    next_cursor: int | None


def _check_filters(status: str | None, limit: int, offset: int, text_filters: dict[str, str | None]) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    if offset < 0:
        raise InvalidInput("offset must not be negative", field="offset")
    if status is not None and status not in {s.value for s in Status}:
        raise InvalidInput(f"status must be one of {', '.join(s.value for s in Status)}", field="status")
    for field, value in text_filters.items():
        refuse_nul(value, field)


def list_actions(
    store: Store,
    identity: Identity,
    *,
    status: str | None,
    tool: str | None,
    agent_id: str | None,
    risk: str | None,
    id_prefix: str | None,
    since: float | None,
    until: float | None,
    limit: int,
    cursor: int | None,
    offset: int,
) -> Page:
    """Newest first; agents see only their own actions."""
    _check_filters(status, limit, offset, {"tool": tool, "agent_id": agent_id, "risk": risk, "id_prefix": id_prefix})
    where = ActionFilter(
        submitted_by=identity.key_id if identity.role is Role.AGENT else None,
        status=status,
        tool=tool,
        agent_id=agent_id,
        risk=risk,
        id_prefix=id_prefix,
        since=since,
        until=until,
    )
    rows = store.read(
        lambda conn: Repositories.sql(conn).actions.list_page(where, limit=limit + 1, cursor=cursor, offset=offset)
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = rows[-1].seq if more and rows else None
    held = [r for r in rows if r.decision == Effect.REQUIRE_APPROVAL.value]
    counts = store.read(lambda conn: approvals.counted(conn, held)) if held else {}
    return Page(rows, counts, next_cursor)


def events(store: Store, identity: Identity, action_id: str) -> list[AuditRecord]:
    row = store.read(lambda conn: access.load(conn, action_id))
    if row is None or not access.visible(row, identity):
        raise access.not_found(action_id)
    return store.read(lambda conn: audit.action_events(conn, action_id))


def params_for_hash(store: Store, action: dict[str, Any], rhash: str) -> dict[str, Any] | None:
    """The params the action had when its request_hash was `rhash`, if it ever was.

    Read from the action's row and its audit trail (an edit records both versions),
    so a refused vote can show the arguments the approver saw beside the new ones.
    """
    if rhash == action["request_hash"]:
        return dict(action["params"])
    for record in store.read(lambda conn: audit.action_events(conn, action["id"])):
        data = record.data if isinstance(record.data, dict) else {}
        if "original_request_hash" not in data:
            continue  # not an edit
        if data.get("original_request_hash") == rhash and isinstance(data.get("original_params"), dict):
            return dict(data["original_params"])
        if data.get("request_hash") == rhash and isinstance(data.get("params"), dict):
            return dict(data["params"])
    return None

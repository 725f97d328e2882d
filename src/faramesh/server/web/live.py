"""`/ui/events`: the dashboard's live feed, a session-authenticated relay of the EventHub.

Each message is one unnamed SSE event whose JSON carries the change type, a trimmed
action (no params, context or approval token: the pages do not need them) and the
audit entry for the change, so the queue and detail pages can update without a
reload. A page passes `after=<seq>` (the audit position it was rendered at) and the
stream first replays what it missed; on reconnect the browser's Last-Event-ID does
the same. When too much was missed the stream asks the page to reload instead.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from faramesh import audit
from faramesh.errors import FarameshError
from faramesh.model import Identity
from faramesh.server.web.guard import LoginRequired, WebRoute, require_user
from faramesh.server.web.pages import gov
from faramesh.service import Governor
from faramesh.storage.schema import audit_log
from faramesh.validation import parse_ascii_int

router = APIRouter(route_class=WebRoute, include_in_schema=False)

REPLAY_LIMIT = 500
KEEPALIVE_SECONDS = 15.0
RECHECK_SECONDS = 15.0  # how soon a revoked key's open stream is closed
_ACTION_FIELDS = (
    "id",
    "status",
    "tool",
    "operation",
    "agent_id",
    "risk_level",
    "reason",
    "policy_reason",
    "rule_id",
    "created_at",
    "updated_at",
    "decided_by",
    "decision_reason",
    "approval",
    "error",
)


def _brief(action: dict[str, Any] | None) -> dict[str, Any] | None:
    if action is None:
        return None
    return {k: action.get(k) for k in _ACTION_FIELDS}


def _entry(record: audit.AuditRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    data = record.data if isinstance(record.data, dict) else {}
    return {
        "event": record.event,
        "actor": record.actor,
        "at": record.ts,
        "reason": data.get("reason"),
        "approvals": data.get("approvals"),
        "quorum": data.get("quorum"),
        "error": data.get("error"),
    }


def _record(conn: Any, seq: int) -> audit.AuditRecord | None:
    row = conn.execute(select(audit_log).where(audit_log.c.seq == seq)).first()
    return audit.row_to_record(row) if row is not None else None


def _message(payload: dict[str, Any], seq: int | None = None) -> bytes:
    head = b"id: " + str(seq).encode() + b"\n" if seq is not None else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def _position(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("after")
    return parse_ascii_int(raw)


async def _replay(g: Governor, user: Identity, after: int, only: str | None) -> tuple[list[bytes], int, bool]:
    """Messages for what happened after `after`; (messages, last seq, too_many)."""
    records = await run_in_threadpool(g.store.read, lambda conn: audit.events_after(conn, after, REPLAY_LIMIT + 1))
    if len(records) > REPLAY_LIMIT:
        return [], after, True
    out = []
    last = after
    for rec in records:
        last = rec.seq
        if rec.action_id is None or (only is not None and rec.action_id != only):
            continue
        try:
            action = await run_in_threadpool(g.get, user, rec.action_id)
        except FarameshError:
            continue
        kind = "action.created" if rec.event == "action.submitted" else rec.event
        payload = {"type": kind, "seq": rec.seq, "action_id": rec.action_id, "action": _brief(action)}
        out.append(_message(payload | {"entry": _entry(rec)}, rec.seq))
    return out, last, False


@router.get("/ui/events")
async def ui_events(request: Request) -> Response:
    user = await require_user(request)
    g = gov(request)
    only = request.query_params.get("action") or None
    after = _position(request)

    async def still_allowed() -> bool:
        try:
            await require_user(request)
        except LoginRequired:
            return False
        return True

    async def stream() -> AsyncIterator[bytes]:
        with g.hub.subscribe(only) as sub:
            last = after
            if after is not None:
                messages, last, too_many = await _replay(g, user, after, only)
                if too_many:
                    yield _message({"type": "reload"})
                    return
                for message in messages:
                    yield message
            yield b"retry: 2000\n: connected\n\n"
            checked = time.monotonic()
            while not await request.is_disconnected():
                if time.monotonic() - checked > RECHECK_SECONDS:
                    if not await still_allowed():
                        yield _message({"type": "logout"})
                        return
                    checked = time.monotonic()
                event = await sub.get(timeout=KEEPALIVE_SECONDS)
                if sub.overflowed:
                    yield _message({"type": "reload"})
                    return
                if event is None:
                    yield b": keep-alive\n\n"
                    continue
                if last is not None and event.seq <= last:
                    continue  # already sent during the replay
                record = await run_in_threadpool(g.store.read, lambda conn, s=event.seq: _record(conn, s))
                payload = {
                    "type": event.type,
                    "seq": event.seq,
                    "action_id": event.action_id,
                    "action": _brief(event.action),
                    "entry": _entry(record),
                }
                yield _message(payload, event.seq)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

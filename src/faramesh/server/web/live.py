"""`/ui/events`: the dashboard's live feed, a session-authenticated relay of the EventHub.

Each message is one unnamed SSE event whose JSON carries the change type, a trimmed
action (no context or approval token; params only on a one-action stream, where the
action page shows them) and the audit entry for the change, so the queue and detail
pages can update without a reload. The quorum progress is the service's own count
(`approval.counted`). A page passes `after=<seq>` (the audit position it was rendered at) and the
stream first replays what it missed; on reconnect the browser's Last-Event-ID does
the same. When too much was missed the stream asks the page to reload instead.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from faramesh import audit, service_reads
from faramesh.errors import FarameshError, KeyRevoked, ServerDraining
from faramesh.events import Subscription
from faramesh.model import Identity, Status
from faramesh.server.web.guard import LoginRequired, WebRoute, codec, require_user, session_of
from faramesh.server.web.pages import gov
from faramesh.server.web.summary import arg_summary, rule_fields
from faramesh.service import Governor
from faramesh.validation import parse_ascii_int

router = APIRouter(route_class=WebRoute, include_in_schema=False)

REPLAY_LIMIT = 500
KEEPALIVE_SECONDS = 15.0
# A revoked key's feed is closed at once through the event hub (or within the hub's
# key re-check interval when nobody announced it). Besides, an open feed looks every
# WAKE_SECONDS whether its session was logged out (in memory) and re-reads its key
# every RECHECK_SECONDS.
WAKE_SECONDS = 2.0
RECHECK_SECONDS = 15.0
# Sent when the server stops: the page reconnects after this delay and replays what it missed.
DRAINING_MESSAGE = b"retry: 2000\n: the server is restarting\n\n"
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
    "request_hash",
    "presence",
)


def _brief(
    action: dict[str, Any] | None, *, with_params: bool = False, fields: dict[str, tuple[str, ...]] | None = None
) -> dict[str, Any] | None:
    """What the pages need; the action page also gets params, so it can show an edit live,
    and the queue the arguments that matter for a held action's row."""
    if action is None:
        return None
    brief = {k: action.get(k) for k in _ACTION_FIELDS}
    if with_params:
        brief["params"] = action.get("params")
    if fields is not None and action.get("status") == Status.PENDING_APPROVAL.value:
        args = arg_summary(action.get("params"), fields.get(action.get("rule_id") or "", ()))
        brief["args"] = [[a.name, a.text, a.full] for a in args]
    return brief


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


def _message(payload: dict[str, Any], seq: int | None = None) -> bytes:
    head = b"id: " + str(seq).encode() + b"\n" if seq is not None else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def _position(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("after")
    return parse_ascii_int(raw)


async def _replay(g: Governor, user: Identity, after: int, only: str | None) -> tuple[list[bytes], int, bool]:
    """Messages for what happened after `after`; (messages, last seq, too_many)."""
    missed = await run_in_threadpool(
        lambda: service_reads.missed_changes(g, user, after, limit=REPLAY_LIMIT, action_id=only)
    )
    if missed.truncated:
        return [], after, True
    out = []
    for change, action in missed.changes:
        payload = {
            "type": change.type,
            "seq": change.seq,
            "action_id": change.action_id,
            "action": _brief(action, with_params=only is not None, fields=None if only else rule_fields(g.policy)),
            "entry": _entry(change.record),
        }
        out.append(_message(payload, change.seq))
    return out, missed.last, False


@router.get("/ui/events")
async def ui_events(request: Request) -> Response:
    user = await require_user(request)
    g = gov(request)
    only = request.query_params.get("action") or None
    after = _position(request)
    session = session_of(request)

    async def still_allowed() -> bool:
        try:
            await require_user(request)
        except (LoginRequired, FarameshError):  # ended, or a re-check the provider could not answer
            return False
        return True

    async def stream() -> AsyncIterator[bytes]:
        if g.hub.draining:
            # The browser's EventSource gives up on an error status; an ended stream makes it
            # reconnect (Last-Event-ID) once the server is back.
            yield DRAINING_MESSAGE
            return
        # Held by the session's key: revoking the key closes the feed (KeyRevoked).
        with g.hub.subscribe(only, key_id=user.key_id) as sub:
            try:
                async with contextlib.aclosing(messages(sub)) as chunks:
                    async for chunk in chunks:
                        yield chunk
            except KeyRevoked:
                yield _message({"type": "logout"})
            except ServerDraining:
                yield DRAINING_MESSAGE

    async def messages(sub: Subscription) -> AsyncGenerator[bytes, None]:
        last = after
        if after is not None:
            replayed, last, too_many = await _replay(g, user, after, only)
            if too_many:
                yield _message({"type": "reload"})
                return
            sub.check()
            for message in replayed:
                yield message
        yield b"retry: 2000\n: connected\n\n"
        checked = sent = time.monotonic()
        while not await request.is_disconnected():
            if codec(request).is_ended(session.sid):  # logged out since the feed opened
                yield _message({"type": "logout"})
                return
            if time.monotonic() - checked >= RECHECK_SECONDS:
                if not await still_allowed():
                    yield _message({"type": "logout"})
                    return
                checked = time.monotonic()
            event = await sub.get(timeout=WAKE_SECONDS)
            if sub.overflowed:
                yield _message({"type": "reload"})
                return
            if event is None:
                if time.monotonic() - sent >= KEEPALIVE_SECONDS:
                    sent = time.monotonic()
                    yield b": keep-alive\n\n"
                continue
            if last is not None and event.seq <= last:
                continue  # already sent during the replay
            record = await run_in_threadpool(service_reads.audit_event, g, event.seq)
            payload = {
                "type": event.type,
                "seq": event.seq,
                "action_id": event.action_id,
                "action": _brief(
                    event.action, with_params=only is not None, fields=None if only else rule_fields(g.policy)
                ),
                "entry": _entry(record),
            }
            sub.check()  # the key may have been revoked while the entry was read
            sent = time.monotonic()
            yield _message(payload, event.seq)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

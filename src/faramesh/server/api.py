"""The /v1 REST API: HTTP in, service calls, HTTP out. No business logic here."""

from __future__ import annotations

import contextlib
import time
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr
from starlette.concurrency import run_in_threadpool

from faramesh import service_reads
from faramesh.errors import Forbidden, InvalidInput, KeyRevoked, ServerDraining
from faramesh.events import Subscription
from faramesh.model import Identity, Status
from faramesh.policy import Effect, PolicyError
from faramesh.server.auth import AdminIdentity, CurrentIdentity
from faramesh.server.jsonbody import FastJSONResponse, StrictJSONRoute
from faramesh.service import Governor, Submission
from faramesh.service.presence import HEARTBEAT as PRESENCE_HEARTBEAT
from faramesh.validation import ASCII_DIGITS, parse_ascii_int

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute, default_response_class=FastJSONResponse)

ActionId = Annotated[str, Field(min_length=1, max_length=64)]
# Sequence numbers are stored as 64-bit integers; larger cursors cannot exist.
MAX_SEQ = 2**63 - 1
KEEPALIVE_SECONDS = 15.0


class SubmitBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tool: StrictStr = Field(description="tool name, e.g. refund", examples=["refund"])
    operation: StrictStr = Field(description="operation on the tool, e.g. process", examples=["process"])
    params: dict[str, Any] = Field(default_factory=dict, description="the arguments the agent will use")
    context: dict[str, Any] = Field(default_factory=dict, description="extra facts, e.g. agent_id")
    agent_id: StrictStr | None = Field(default=None, description="claimed agent id (bound keys override)")
    reattach: StrictBool = Field(
        default=True,
        description="false: never answer with an identical action still held or approved and not yet run "
        "(an identical retry is otherwise re-attached to it)",
    )


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: StrictStr | None = Field(default=None, max_length=2000)


class DenyBody(ReasonBody):
    request_hash: StrictStr | None = Field(
        default=None, max_length=64, description="refuse unless the action still has this request_hash"
    )


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: StrictStr | None = Field(default=None, max_length=2000)
    params: dict[str, Any] | None = Field(
        default=None, description="approve these edited params instead (re-evaluated by the policy)"
    )
    request_hash: StrictStr | None = Field(
        default=None, max_length=64, description="refuse unless the action still has this request_hash"
    )


class ApprovalBody(BaseModel):
    """The published faramesh-sdk's form: approve or deny with the action's approval token."""

    model_config = ConfigDict(extra="ignore")
    token: StrictStr
    approve: StrictBool
    reason: StrictStr | None = Field(default=None, max_length=2000)


class ResultBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    success: StrictBool
    result: Any = None
    error: StrictStr | None = None


class ReconcileBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["succeeded", "failed"] = Field(description="what became of the action: it ran, or it did not")
    reason: StrictStr | None = Field(default=None, max_length=2000, description="how you know")
    result: Any = None
    error: StrictStr | None = None


class KeyCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["agent", "approver", "admin"]
    name: StrictStr = Field(default="", max_length=200)
    agent_id: StrictStr | None = Field(default=None, min_length=1, max_length=200)
    groups: list[StrictStr] = Field(default_factory=list, max_length=50)


def gov(request: Request) -> Governor:
    governor: Governor = request.app.state.governor
    return governor


def submission_of(body: SubmitBody, idempotency_key: str | None) -> Submission:
    if idempotency_key is not None and not (1 <= len(idempotency_key) <= 200):
        raise InvalidInput("Idempotency-Key must be 1-200 characters", field="Idempotency-Key")
    return Submission(
        tool=body.tool,
        operation=body.operation,
        params=body.params,
        context=body.context,
        agent_id=body.agent_id,
        idempotency_key=idempotency_key,
        reattach=body.reattach,
    )


@router.post("/actions", status_code=201, summary="Submit an action for a decision")
async def submit_action(
    body: SubmitBody,
    request: Request,
    identity: CurrentIdentity,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> FastJSONResponse:
    return await answer_submit(gov(request), identity, body, idempotency_key)


async def answer_submit(
    g: Governor, identity: Identity, body: SubmitBody, idempotency_key: str | None
) -> FastJSONResponse:
    """Submit and answer: the one step this route and its fast path (hot_path.py) share."""
    action = await g.submit_async(identity, submission_of(body, idempotency_key))
    # 200, not 201: an identical held action was picked up instead of creating one.
    return FastJSONResponse(action, status_code=200 if action.get("reattached") else 201)


@router.get("/actions", summary="List actions, newest first")
async def list_actions(
    request: Request,
    identity: CurrentIdentity,
    status: Annotated[str | None, Query(max_length=32)] = None,
    tool: Annotated[str | None, Query(max_length=128)] = None,
    agent_id: Annotated[str | None, Query(max_length=200)] = None,
    risk: Annotated[str | None, Query(max_length=16)] = None,
    id_prefix: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Field(ge=1, le=500), ASCII_DIGITS, Query()] = 50,
    cursor: Annotated[Annotated[int, Field(ge=0, le=MAX_SEQ), ASCII_DIGITS] | None, Query()] = None,
    offset: Annotated[int, Field(ge=0, le=1_000_000), ASCII_DIGITS, Query()] = 0,
) -> dict[str, Any]:
    g = gov(request)
    items, next_cursor = await run_in_threadpool(
        lambda: g.list_actions(
            identity,
            status=status,
            tool=tool,
            agent_id=agent_id,
            risk=risk,
            id_prefix=id_prefix,
            limit=limit,
            cursor=cursor,
            offset=offset,
        )
    )
    return {"actions": items, "next_cursor": str(next_cursor) if next_cursor is not None else None}


@router.get("/actions/{action_id}", summary="Get one action")
async def get_action(action_id: ActionId, request: Request, identity: CurrentIdentity) -> dict[str, Any]:
    return await run_in_threadpool(lambda: gov(request).get(identity, action_id, pick_up=True))


@router.get("/actions/{action_id}/wait", summary="Wait until the action leaves pending_approval")
async def wait_action(
    action_id: ActionId,
    request: Request,
    identity: CurrentIdentity,
    timeout: Annotated[float, Query(ge=0, le=120)] = 30.0,
) -> dict[str, Any]:
    g = gov(request)
    # A stopping server takes no new waits and ends open ones with 503 + Retry-After
    # (ServerDraining), so the client asks again once the server is back.
    g.hub.refuse_if_draining()
    # Held by the caller's key: revoking the key ends the wait with 401 (KeyRevoked).
    with g.hub.subscribe(action_id, key_id=identity.key_id) as sub:
        status = await run_in_threadpool(g.get_status, identity, action_id)
        deadline = time.monotonic() + timeout
        present_at = -PRESENCE_HEARTBEAT  # when this wait last told the store its agent is here
        while status is Status.PENDING_APPROVAL:
            left = deadline - time.monotonic()
            if left <= 0 or await request.is_disconnected():  # an agent that left is not waiting
                break
            if time.monotonic() - present_at >= PRESENCE_HEARTBEAT:
                await run_in_threadpool(g.agent_waiting, identity, action_id)
                present_at = time.monotonic()
            event = await sub.get(timeout=min(left, g.hub.recheck_interval, PRESENCE_HEARTBEAT))
            if event is None:
                # Belt and braces: re-read in case a change happened in another process.
                status = await run_in_threadpool(g.get_status, identity, action_id)
            elif event.action is not None:
                status = Status(event.action["status"])
        # The answer picks up an approval (see service/presence.py) before it is given; not
        # for an agent that stopped waiting (timeout, cancelled call): nobody would run it,
        # so it lapses unless the same call is made again.
        gone = await request.is_disconnected()
        action = await run_in_threadpool(lambda: g.get(identity, action_id, pick_up=not gone))
        sub.check()  # a key revoked while the action was read gets nothing
    return action


@router.get("/actions/{action_id}/events", summary="The action's audit trail")
async def action_events(action_id: ActionId, request: Request, identity: CurrentIdentity) -> dict[str, Any]:
    events = await run_in_threadpool(gov(request).events, identity, action_id)
    return {"events": events}


@router.post("/actions/{action_id}/approve", summary="Approve a pending action")
async def approve_action(
    action_id: ActionId, request: Request, identity: CurrentIdentity, body: ApproveBody | None = None
) -> dict[str, Any]:
    body = body or ApproveBody()
    return await run_in_threadpool(
        lambda: gov(request).approve(
            identity, action_id, reason=body.reason, params=body.params, expected_hash=body.request_hash
        )
    )


@router.post("/actions/{action_id}/deny", summary="Deny a pending action")
async def deny_action(
    action_id: ActionId, request: Request, identity: CurrentIdentity, body: DenyBody | None = None
) -> dict[str, Any]:
    body = body or DenyBody()
    return await run_in_threadpool(
        lambda: gov(request).deny(identity, action_id, reason=body.reason, expected_hash=body.request_hash)
    )


@router.post("/actions/{action_id}/approval", summary="Approve or deny with the approval token")
async def approval(
    action_id: ActionId, body: ApprovalBody, request: Request, identity: CurrentIdentity
) -> dict[str, Any]:
    g = gov(request)
    decide = g.approve if body.approve else g.deny
    return await run_in_threadpool(lambda: decide(identity, action_id, reason=body.reason, token=body.token))


@router.post("/actions/{action_id}/cancel", summary="Withdraw a held action (its agent or an admin)")
async def cancel_action(
    action_id: ActionId, request: Request, identity: CurrentIdentity, body: ReasonBody | None = None
) -> dict[str, Any]:
    body = body or ReasonBody()
    return await run_in_threadpool(lambda: gov(request).cancel(identity, action_id, reason=body.reason))


@router.post("/actions/{action_id}/result", summary="Report the outcome of an executed action")
async def report_result(
    action_id: ActionId, body: ResultBody, request: Request, identity: CurrentIdentity
) -> dict[str, Any]:
    return await run_in_threadpool(
        lambda: gov(request).report_result(
            identity, action_id, success=body.success, result=body.result, error=body.error
        )
    )


@router.post("/actions/{action_id}/start", summary="Take the single execution of an allowed or approved action")
async def start_action(action_id: ActionId, request: Request, identity: CurrentIdentity) -> dict[str, Any]:
    return await run_in_threadpool(gov(request).start_action, identity, action_id)


@router.post("/actions/{action_id}/heartbeat", summary="Extend the execution lease of a started action")
async def heartbeat(action_id: ActionId, request: Request, identity: CurrentIdentity) -> dict[str, Any]:
    return await run_in_threadpool(gov(request).heartbeat, identity, action_id)


@router.post("/actions/{action_id}/reconcile", summary="Say what became of an action whose outcome is unknown")
async def reconcile_action(
    action_id: ActionId, body: ReconcileBody, request: Request, identity: CurrentIdentity
) -> dict[str, Any]:
    return await run_in_threadpool(
        lambda: gov(request).reconcile(
            identity, action_id, outcome=body.outcome, reason=body.reason, result=body.result, error=body.error
        )
    )


@router.get("/permits/keys", summary="The public keys permits are signed with (JWKS; no key needed)")
async def permit_keys(request: Request) -> JSONResponse:
    jwks = await run_in_threadpool(gov(request).permit_jwks)
    # Short caching: a rotation reaches verifiers within a minute, and they refetch on an unknown kid.
    return JSONResponse(jwks, headers={"Cache-Control": "public, max-age=60"}, media_type="application/jwk-set+json")


def _sse(event: dict[str, Any], seq: int) -> bytes:
    return b"id: " + str(seq).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


@router.get("/events", summary="Server-sent events for every state change")
async def events(
    request: Request,
    identity: CurrentIdentity,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    g = gov(request)
    g.hub.refuse_if_draining()
    after: int | None = None
    if last_event_id:
        after = parse_ascii_int(last_event_id, maximum=MAX_SEQ)
        if after is None:
            raise InvalidInput("Last-Event-ID must be an event id from this stream", field="Last-Event-ID")

    def visible(action: dict[str, Any] | None, submitted_by: str | None) -> bool:
        return identity.can_decide or submitted_by == identity.key_id

    async def stream() -> Any:
        # Held by the caller's key: revoking the key closes the stream (KeyRevoked).
        with g.hub.subscribe(None, key_id=identity.key_id) as sub:
            try:
                async with contextlib.aclosing(messages(sub)) as chunks:
                    async for chunk in chunks:
                        yield chunk
            except KeyRevoked:
                yield b": the API key was revoked\n\n"
            except ServerDraining as exc:
                # Ended cleanly: the client reconnects with Last-Event-ID and misses nothing.
                retry_ms = int(exc.extra.get("retry_after", 1) * 1000)
                yield f"retry: {retry_ms}\n: the server is restarting; reconnect with Last-Event-ID\n\n".encode()

    async def messages(sub: Subscription) -> Any:
        last = after
        if after is not None:
            missed = await run_in_threadpool(
                lambda: service_reads.missed_changes(g, identity, after, limit=5000, keep_first=True)
            )
            last = missed.last
            for change, action in missed.changes:
                sub.check()  # the key may have been revoked while the actions were read
                yield _sse(
                    {
                        "type": change.type,
                        "seq": change.seq,
                        "action_id": change.action_id,
                        "status": change.record.data.get("status"),
                        "action": action,
                    },
                    change.seq,
                )
        yield b": connected\n\n"
        while not await request.is_disconnected():
            event = await sub.get(timeout=KEEPALIVE_SECONDS)
            if sub.overflowed:
                return
            if event is None:
                yield b": keep-alive\n\n"
                continue
            if last is not None and event.seq <= last:
                continue
            if not visible(event.action, event.data.get("submitted_by")):
                continue
            yield _sse(
                {
                    "type": event.type,
                    "seq": event.seq,
                    "action_id": event.action_id,
                    "status": event.action["status"] if event.action else None,
                    "action": _strip_token(event.action, identity),
                },
                event.seq,
            )

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _strip_token(action: dict[str, Any] | None, identity: Identity) -> dict[str, Any] | None:
    if action is None:
        return None
    if identity.can_decide and action.get("status") == Status.PENDING_APPROVAL.value:
        return action
    return {k: v for k, v in action.items() if k != "approval_token"}


# -- dry runs ----------------------------------------------------------------------
@router.post("/decide", summary="Evaluate an action against the policy without recording it")
async def decide(body: SubmitBody, request: Request, identity: CurrentIdentity) -> FastJSONResponse:
    return answer_decide(gov(request), identity, body)


def answer_decide(g: Governor, identity: Identity, body: SubmitBody) -> FastJSONResponse:
    """The dry run's answer: the one step this route and its fast path (hot_path.py) share.
    Pure computation (validation, the policy, one hash: microseconds), so on the event
    loop: a worker thread's hand-off would cost more than the decision itself."""
    decision, agent_id, rhash = g.evaluate(identity, submission_of(body, None))
    return FastJSONResponse(
        {
            "decision": decision.effect.value,
            "reason": decision.reason,
            "risk_level": decision.risk,
            "rule_id": decision.rule_id,
            "policy_hash": g.policy.hash,
            "request_hash": rhash,
            "agent_id": agent_id,
        }
    )


_OUTCOMES = {Effect.ALLOW: "EXECUTE", Effect.REQUIRE_APPROVAL: "ABSTAIN", Effect.DENY: "HALT"}


@router.post("/gate/decide", summary="Dry-run decision in the published faramesh-sdk's gate form")
async def gate_decide(body: SubmitBody, request: Request, identity: CurrentIdentity) -> FastJSONResponse:
    return answer_gate(gov(request), identity, body)


def answer_gate(g: Governor, identity: Identity, body: SubmitBody) -> FastJSONResponse:
    """The gate form of the dry run, shared with the fast path like `answer_decide`."""
    decision, agent_id, rhash = g.evaluate(identity, submission_of(body, None))
    return FastJSONResponse(
        {
            "outcome": _OUTCOMES[decision.effect],
            "decision": decision.effect.value,
            "reason": decision.reason,
            "reason_code": decision.rule_id or "default",
            "risk_level": decision.risk,
            "rule_id": decision.rule_id,
            "policy_hash": g.policy.hash,
            "policy_version": g.policy.hash[:12],
            "request_hash": rhash,
            "agent_id": agent_id,
        }
    )


# -- policy ------------------------------------------------------------------------
def policy_summary(g: Governor) -> dict[str, Any]:
    policy = g.policy
    return {
        "hash": policy.hash,
        "source": policy.source,
        "default": policy.default.value,
        "loaded_at": g.policy_loaded_at,
        "rules": [{"id": r.id, "effect": r.effect.value, "reason": r.reason, "risk": r.risk} for r in policy.rules],
        "warnings": list(policy.warnings),
        "text": policy.source_text,
    }


@router.get("/policy", summary="The active policy (and the shadow policy, when one runs)")
async def get_policy(request: Request, identity: CurrentIdentity) -> dict[str, Any]:
    if not identity.can_decide:
        raise Forbidden("only approver and admin keys can read the policy")
    reloader = getattr(request.app.state, "policy_reloader", None)
    shadow = reloader.describe_shadow() if reloader is not None else None
    return policy_summary(gov(request)) | {"shadow": shadow}


@router.post("/policy/reload", summary="Reload the policy file (admin)")
async def reload_policy(request: Request, identity: AdminIdentity) -> dict[str, Any]:
    reloader = request.app.state.reload_policy
    try:
        await run_in_threadpool(reloader, identity.label)
    except PolicyError as exc:
        raise InvalidInput(
            f"policy rejected; the previous policy stays in force: {exc}",
            field="policy",
            problems=[str(p) for p in exc.problems],
        ) from None
    return policy_summary(gov(request))


# -- keys --------------------------------------------------------------------------
@router.get("/keys", summary="List API keys (admin)")
async def list_keys(request: Request, identity: AdminIdentity) -> dict[str, Any]:
    infos = await run_in_threadpool(gov(request).list_keys)
    return {"keys": [k.to_dict() for k in infos]}


@router.post("/keys", status_code=201, summary="Create an API key (admin); the secret is shown once")
async def create_key(body: KeyCreateBody, request: Request, identity: AdminIdentity) -> JSONResponse:
    g = gov(request)
    info, secret = await run_in_threadpool(
        lambda: g.create_key(
            role=body.role, name=body.name, agent_id=body.agent_id, groups=body.groups, actor=identity.label
        )
    )
    return JSONResponse(info.to_dict() | {"key": secret}, status_code=201)


@router.delete("/keys/{key_id}", summary="Revoke an API key (admin)")
async def revoke_key(
    key_id: Annotated[str, Field(max_length=32)], request: Request, identity: AdminIdentity
) -> dict[str, Any]:
    info = await run_in_threadpool(lambda: gov(request).revoke_key(key_id, actor=identity.label))
    return info.to_dict()

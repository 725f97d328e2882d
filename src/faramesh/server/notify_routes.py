"""HTTP routes for notifications: the webhooks admin API and Slack's interaction endpoint."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.concurrency import run_in_threadpool

from faramesh.errors import Conflict, FarameshError, Forbidden, NotFound, Unauthorized
from faramesh.model import Identity
from faramesh.notify import deliveries
from faramesh.notify.dispatcher import WebhookDispatcher
from faramesh.notify.slack import SlackConfig, interaction_reply, parse_interaction, verify_slack_request
from faramesh.notify.webhooks import check_spec, new_secret
from faramesh.server.auth import AdminIdentity
from faramesh.server.jsonbody import StrictJSONRoute
from faramesh.service import Governor
from faramesh.validation import ASCII_DIGITS

log = logging.getLogger("faramesh.notify")

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)
# Slack posts form-encoded bodies, so its endpoint is not a strict-JSON route.
slack_router = APIRouter(prefix="/v1")


class WebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: StrictStr = Field(max_length=2000, examples=["https://example.com/faramesh"])
    secret: StrictStr | None = Field(default=None, max_length=500, description="generated when omitted (shown once)")
    events: list[StrictStr] | None = Field(
        default=None, max_length=20, examples=[["action.created", "action.approved"]]
    )
    format: StrictStr = Field(default="json", description="json or slack")
    description: StrictStr = Field(default="", max_length=500)


def dispatcher(request: Request) -> WebhookDispatcher:
    notifier: WebhookDispatcher | None = getattr(request.app.state, "webhooks", None)
    if notifier is None:  # pragma: no cover - always set by create_app
        raise NotFound("webhooks are not enabled on this server")
    return notifier


def governor(request: Request) -> Governor:
    g: Governor = request.app.state.governor
    return g


@router.get("/webhooks", summary="List webhooks (admin)", tags=["webhooks"])
async def list_webhooks(request: Request, identity: AdminIdentity) -> dict[str, Any]:
    d = dispatcher(request)
    d.invalidate()
    return {"webhooks": [h.to_dict() for h in await d.hooks()]}


@router.post("/webhooks", status_code=201, summary="Add a webhook (admin); its secret is shown once", tags=["webhooks"])
async def create_webhook(body: WebhookBody, request: Request, identity: AdminIdentity) -> JSONResponse:
    d = dispatcher(request)
    raw = body.model_dump(exclude_none=True)
    if body.secret is None:
        raw["secret"] = new_secret()
    spec = check_spec(raw)
    hook = deliveries.row_to_webhook(
        await run_in_threadpool(lambda: governor(request).create_webhook(spec, actor=identity.label))
    )
    d.listen()
    d.invalidate()
    return JSONResponse(hook.to_dict() | {"secret": hook.secret or None}, status_code=201)


@router.delete("/webhooks/{webhook_id}", summary="Remove a webhook (admin)", tags=["webhooks"])
async def delete_webhook(
    webhook_id: Annotated[str, Field(max_length=64)], request: Request, identity: AdminIdentity
) -> dict[str, Any]:
    d = dispatcher(request)
    if any(h.id == webhook_id for h in d.file_hooks):
        raise Forbidden(
            f"webhook {webhook_id} comes from the --webhooks file and is read-only; edit the file instead",
            field="id",
            code="read_only",
        )
    hook = deliveries.row_to_webhook(
        await run_in_threadpool(lambda: governor(request).delete_webhook(webhook_id, actor=identity.label))
    )
    d.invalidate()
    return hook.to_dict()


@router.get("/webhooks/{webhook_id}/deliveries", summary="A webhook's delivery log (admin)", tags=["webhooks"])
async def webhook_deliveries(
    webhook_id: Annotated[str, Field(max_length=64)],
    request: Request,
    identity: AdminIdentity,
    limit: Annotated[int, Field(ge=1, le=500), ASCII_DIGITS, Query()] = 50,
) -> dict[str, Any]:
    d = dispatcher(request)
    d.invalidate()
    if webhook_id not in {h.id for h in await d.hooks()}:
        raise NotFound(f"no webhook with id {webhook_id!r}", field="id")
    rows = await run_in_threadpool(governor(request).webhook_deliveries, webhook_id, limit)
    return {"deliveries": [deliveries.delivery_to_dict(r) for r in rows]}


# -- Slack ---------------------------------------------------------------------------
def _legacy_button_hash(g: Governor, identity: Identity, action_id: str) -> str:
    """The hash a button without one stands for: a message posted before buttons carried
    the hash showed the agent's arguments, so it may decide only an action never edited."""
    action = g.get(identity, action_id)
    if action.get("original_params") is not None:
        raise Conflict(
            "this Slack message is out of date: the action's arguments were changed after it was posted; "
            "review the newer message or the dashboard",
            field="request_hash",
            code="request_hash_mismatch",
            status=action["status"],
        )
    return str(action["request_hash"])


@slack_router.post(
    "/integrations/slack/interactions",
    summary="Slack button presses (Approve / Deny), verified with Slack's signing secret",
    tags=["integrations"],
)
async def slack_interactions(request: Request) -> JSONResponse:
    config: SlackConfig | None = getattr(request.app.state, "slack", None)
    if config is None:
        raise NotFound("the Slack integration is not configured (serve --slack-config FILE)")
    body = await request.body()
    problem = verify_slack_request(
        config.signing_secret,
        request.headers.get("x-slack-request-timestamp"),
        request.headers.get("x-slack-signature"),
        body,
    )
    if problem is not None:
        raise Unauthorized(f"Slack request refused: {problem}", field="X-Slack-Signature")
    press = parse_interaction(body)
    key_id = config.users.get(press.user_id)
    if key_id is None:
        raise Forbidden(f"Slack user {press.user_id} is not mapped to a Faramesh approver", field="user")
    g = request.app.state.governor
    identity = await run_in_threadpool(g.identity_for_key, key_id)
    if identity is None:
        raise Forbidden(f"the key mapped to Slack user {press.user_id} is unknown or revoked", field="user")
    verb = "Approved" if press.approve else "Denied"
    reason = f"{verb} in Slack by {press.user_name}"
    decide = g.approve if press.approve else g.deny
    try:
        shown = press.request_hash or await run_in_threadpool(_legacy_button_hash, g, identity, press.action_id)
        action = await run_in_threadpool(lambda: decide(identity, press.action_id, reason=reason, expected_hash=shown))
    except FarameshError as exc:
        # The request was genuine: answer in a form Slack shows the presser, with the
        # usual error fields alongside.
        reply = interaction_reply(f"Could not {'approve' if press.approve else 'deny'}: {exc.message}")
        return JSONResponse(reply | exc.to_dict(), status_code=200)
    name = f"{action['tool']}.{action['operation']}"
    if action["status"] == "pending_approval":
        approval = action.get("approval") or {}
        quorum, counted = approval.get("quorum", 1), approval.get("counted", 0)
        text = f"Your approval of {name} is recorded ({counted} of {quorum})."
    else:
        text = f"{verb} {name} ({action['id']}); it is now {action['status']}."
    return JSONResponse(interaction_reply(text) | {"action_id": action["id"], "status": action["status"]})

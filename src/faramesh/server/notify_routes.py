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
from faramesh.notify.slack import (
    Interaction,
    SlackConfig,
    interaction_reply,
    parse_interaction,
    render_message,
    response_url_allowed,
    unmapped_user_text,
    verify_slack_request,
)
from faramesh.notify.slack_app import confirmed_email, open_deny_modal, respond
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
    summary="Slack button presses (Approve / Deny) and the deny-reason modal, verified with Slack's signing secret",
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
    answer_url = press.response_url if response_url_allowed(press.response_url, config) else None
    g: Governor = request.app.state.governor
    if _people_by_email(request, config):
        # With single sign-on, a press is the person's: the one whose provider vouched for the
        # email Slack confirmed for this account, with the same identity as in the dashboard.
        identity, why = await _person_of(g, config, press.user_id)
        if identity is None:
            exc = Forbidden(f"Slack user {press.user_id} is not linked to a Faramesh approver: {why}", field="user")
            text = (
                f"Your press was not recorded: {why}. Sign in to the Faramesh dashboard with your company "
                "account (the same email as in Slack), or decide there."
            )
            return await _answer(press, answer_url, text, exc)
        return await _decide_press(g, identity, config, press, answer_url)
    key_id = config.users.get(press.user_id)
    identity = await run_in_threadpool(g.identity_for_key, key_id) if key_id is not None else None
    if identity is None:
        # A genuine request from someone not (or no longer) linked: tell them how to link,
        # in a form Slack shows them, with the usual error fields alongside.
        exc = Forbidden(f"Slack user {press.user_id} is not linked to an active Faramesh approver key", field="user")
        text = (
            unmapped_user_text(press.user_id)
            if key_id is None
            else (
                f"The Faramesh key linked to your Slack account ({press.user_id}) is unknown or revoked; "
                "ask an admin to link a current approver key in the Slack config."
            )
        )
        return await _answer(press, answer_url, text, exc)
    return await _decide_press(g, identity, config, press, answer_url)


def _people_by_email(request: Request, config: SlackConfig) -> bool:
    """Presses are matched to people by email when the dashboard uses single sign-on and
    Faramesh can ask Slack who pressed (a bot token); else by the config's `users:` map."""
    sso = getattr(request.app.state, "sso", None)
    return bool(sso is not None and sso.enabled and config.bot_token)


async def _person_of(g: Governor, config: SlackConfig, user_id: str) -> tuple[Identity | None, str]:
    email, why = await run_in_threadpool(confirmed_email, config, user_id)
    if email is None:
        return None, why
    return await run_in_threadpool(g.person_for_chat, email)


async def _decide_press(
    g: Governor, identity: Identity, config: SlackConfig, press: Interaction, answer_url: str | None
) -> JSONResponse:
    verb = "approve" if press.approve else "deny"
    if not press.approve and press.kind == "block_actions" and config.app and press.trigger_id:
        # Deny asks for the reason first (a modal); the decision is taken when it is submitted.
        return await _open_deny_modal(g, identity, config, press, answer_url)
    if press.kind == "view_submission":
        reason = (press.reason or "").strip()
        if not reason:
            return JSONResponse({"response_action": "errors", "errors": {"reason": "Say why it is denied."}})
    else:
        reason = f"{'Approved' if press.approve else 'Denied'} in Slack by {press.user_name}"
    decide = g.approve if press.approve else g.deny
    try:
        shown = press.request_hash or await run_in_threadpool(_legacy_button_hash, g, identity, press.action_id)
        action = await run_in_threadpool(lambda: decide(identity, press.action_id, reason=reason, expected_hash=shown))
    except FarameshError as exc:
        if press.kind == "view_submission":
            errors = {"response_action": "errors", "errors": {"reason": f"Could not deny: {exc.message}"[:150]}}
            return JSONResponse(errors | exc.to_dict())
        return await _answer(press, answer_url, f"Could not {verb}: {exc.message}", exc)
    if press.kind == "view_submission":
        return JSONResponse({"response_action": "clear", "action_id": action["id"], "status": action["status"]})
    name = f"{action['tool']}.{action['operation']}"
    if action["status"] == "pending_approval":
        approval = action.get("approval") or {}
        quorum, counted = approval.get("quorum", 1), approval.get("counted", 0)
        text = f"Your approval of {name} is recorded ({counted} of {quorum})."
    else:
        text = f"{'Approved' if press.approve else 'Denied'} {name} ({action['id']}); it is now {action['status']}."
        if answer_url and not config.app:
            # Without the Web API, the pressed message itself is replaced: decided, no buttons.
            final = render_message(f"action.{action['status']}", action, dashboard_url=config.dashboard_url)
            await run_in_threadpool(respond, answer_url, final | {"replace_original": True})
            answer_url = None
    reply = interaction_reply(text)
    if answer_url:
        await run_in_threadpool(respond, answer_url, reply)
    return JSONResponse(reply | {"action_id": action["id"], "status": action["status"]})


async def _answer(press: Interaction, answer_url: str | None, text: str, exc: FarameshError) -> JSONResponse:
    """A refusal the presser sees (ephemeral), answered in the request and through response_url."""
    if press.kind == "view_submission":
        return JSONResponse({"response_action": "errors", "errors": {"reason": text[:150]}} | exc.to_dict())
    reply = interaction_reply(text)
    if answer_url:
        await run_in_threadpool(respond, answer_url, reply)
    return JSONResponse(reply | exc.to_dict(), status_code=200)


async def _open_deny_modal(
    g: Governor, identity: Identity, config: SlackConfig, press: Interaction, answer_url: str | None
) -> JSONResponse:
    try:
        action = await run_in_threadpool(g.get, identity, press.action_id)
    except FarameshError as exc:
        return await _answer(press, answer_url, f"Could not deny: {exc.message}", exc)
    title = f"{action['tool']}.{action['operation']}"
    assert press.trigger_id is not None
    try:
        await run_in_threadpool(open_deny_modal, config, press.trigger_id, press.action_id, press.request_hash, title)
    except Exception as exc:  # the modal could not open: say so, decide nothing
        log.warning("opening the Slack deny modal failed: %s", exc)
        problem = Conflict("could not open the deny form in Slack; deny in the dashboard", status=action["status"])
        return await _answer(press, answer_url, problem.message, problem)
    return JSONResponse({"action_id": action["id"], "opened": "deny_reason"})

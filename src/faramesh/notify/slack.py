"""Slack: Block Kit messages with Approve / Deny buttons, the deny-reason modal, and
verification of the interaction requests Slack sends when someone presses a button.

Slack signs each request: `X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret,
"v0:{X-Slack-Request-Timestamp}:{raw body}")>`, checked with slack_sdk's
SignatureVerifier. Requests older (or newer) than five minutes are refused, so a
captured request cannot be replayed later. Messages are built with slack_sdk's Block
Kit models.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View
from slack_sdk.signature import Clock, SignatureVerifier

from faramesh.errors import InvalidInput
from faramesh.policy.parser import load_plain
from faramesh.validation import parse_ascii_int, refuse_nul

APPROVE_ACTION = "faramesh_approve"
DENY_ACTION = "faramesh_deny"
DENY_MODAL = "faramesh_deny_reason"
REASON_BLOCK = "reason"
REASON_INPUT = "reason_input"
REPLAY_WINDOW = 300  # seconds
SLACK_USER_RE = re.compile(r"[UW][A-Z0-9]{2,30}")
SLACK_CHANNEL_RE = re.compile(r"[CGD][A-Z0-9]{2,30}")
DEFAULT_API_URL = "https://slack.com/api/"
# Risks whose Approve button asks "are you sure?" in Slack before it is sent.
CONFIRM_RISKS = frozenset({"high", "critical"})

_TITLES = {
    "action.created": "New action",
    "action.approval_recorded": "Approval recorded",
    "action.approved": "Approved",
    "action.denied": "Denied",
    "action.expired": "Expired",
    "action.cancelled": "Cancelled",
    "action.started": "Started",
    "action.outcome_unknown": "Outcome unknown: reconcile it",
    "action.reconciled": "Reconciled",
    "action.succeeded": "Succeeded",
    "action.failed": "Failed",
    "action.reminder": "Still waiting",
    "action.escalated": "Escalated",
}
_STATUS_TITLES = {
    "approved": "Approved",
    "denied": "Denied",
    "cancelled": "Cancelled",
    "allowed": "Allowed",
    "succeeded": "Succeeded",
    "failed": "Failed",
}
_RISK_MARK = {"low": "🟢", "medium": "🟡", "high": "🟠", "critical": "🔴"}
_TEXT_LIMIT = 2900  # Slack refuses section text over 3000 characters
_CONFIG_KEYS = {
    "signing_secret",
    "users",
    "bot_token",
    "bot_token_env",
    "channel",
    "api_url",
    "escalation_channels",
    "dashboard_url",
}


@dataclass(frozen=True)
class SlackConfig:
    signing_secret: str
    users: Mapping[str, str] = field(default_factory=dict)  # Slack user id -> Faramesh key id
    # With a bot token and a channel, held actions are posted through Slack's Web API and
    # each message is updated in place once the action is decided; Deny opens a modal.
    bot_token: str | None = None
    channel: str | None = None
    api_url: str = DEFAULT_API_URL
    escalation_channels: Mapping[str, str] = field(default_factory=dict)  # escalate_to name -> channel id
    dashboard_url: str | None = None

    @property
    def app(self) -> bool:
        """True when Faramesh posts and updates the messages itself (Web API)."""
        return bool(self.bot_token and self.channel)


def load_slack_config(path: str | Path) -> SlackConfig:
    """Read `serve --slack-config FILE` (YAML or JSON): {signing_secret, users: {U123: key id},
    and optionally bot_token (or bot_token_env), channel, api_url, escalation_channels, dashboard_url}."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = load_plain(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}", field="slack") from None
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{path}: expected a mapping with signing_secret and users", field="slack")
    unknown = set(data) - _CONFIG_KEYS
    if unknown:
        raise InvalidInput(f"{path}: unknown field(s) {', '.join(sorted(map(str, unknown)))}", field="slack")
    secret = data.get("signing_secret")
    if not isinstance(secret, str) or not secret.strip():
        raise InvalidInput(f"{path}: signing_secret is required", field="signing_secret")
    users = data.get("users") or {}
    if not isinstance(users, Mapping):
        raise InvalidInput(f"{path}: users must map Slack user ids to key ids", field="users")
    mapped: dict[str, str] = {}
    for user, key_id in users.items():
        if not isinstance(user, str) or not SLACK_USER_RE.fullmatch(user):
            raise InvalidInput(f"{path}: {user!r} is not a Slack user id (like U0123ABCD)", field="users")
        if isinstance(key_id, int | float) and not isinstance(key_id, bool):
            # YAML read an unquoted id of digits as a number; its digits may have changed.
            raise InvalidInput(
                f"{path}: users.{user} was read as the number {key_id!r}, not a key id: put the key id "
                "in quotes, exactly as `faramesh keys list` shows it",
                field=f"users.{user}",
            )
        if not isinstance(key_id, str) or not key_id.strip():
            raise InvalidInput(f"{path}: users.{user} must be a Faramesh key id", field=f"users.{user}")
        mapped[user] = key_id.strip()
    token = data.get("bot_token")
    token_env = data.get("bot_token_env")
    if token is None and token_env is not None:
        if not isinstance(token_env, str) or not os.environ.get(token_env):
            raise InvalidInput(f"{path}: bot_token_env names an unset environment variable", field="bot_token_env")
        token = os.environ[token_env]
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise InvalidInput(f"{path}: bot_token must be the app's bot token (xoxb-...)", field="bot_token")
    channel = data.get("channel")
    if channel is not None and (not isinstance(channel, str) or not SLACK_CHANNEL_RE.fullmatch(channel)):
        raise InvalidInput(f"{path}: channel must be a Slack channel id (like C0123ABCD)", field="channel")
    if bool(token) != bool(channel):
        raise InvalidInput(f"{path}: bot_token and channel go together", field="channel" if token else "bot_token")
    api_url = data.get("api_url", DEFAULT_API_URL)
    if not isinstance(api_url, str) or urlsplit(api_url).scheme not in ("http", "https"):
        raise InvalidInput(f"{path}: api_url must be an http(s) URL", field="api_url")
    escalation = data.get("escalation_channels") or {}
    if not isinstance(escalation, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and SLACK_CHANNEL_RE.fullmatch(v) for k, v in escalation.items()
    ):
        raise InvalidInput(
            f"{path}: escalation_channels must map escalate_to names to channel ids", field="escalation_channels"
        )
    dashboard = data.get("dashboard_url")
    if dashboard is not None and (
        not isinstance(dashboard, str) or urlsplit(dashboard).scheme not in ("http", "https")
    ):
        raise InvalidInput(f"{path}: dashboard_url must be an http(s) URL", field="dashboard_url")
    return SlackConfig(
        signing_secret=secret.strip(),
        users=mapped,
        bot_token=token.strip() if token else None,
        channel=channel,
        api_url=api_url if api_url.endswith("/") else api_url + "/",
        escalation_channels=dict(escalation),
        dashboard_url=dashboard.rstrip("/") if dashboard else None,
    )


# -- request signatures ------------------------------------------------------------
def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """The v0 signature Slack sends for `body` (for tests and tools that act as Slack)."""
    try:
        signature = SignatureVerifier(signing_secret).generate_signature(timestamp=timestamp, body=body)
    except UnicodeDecodeError:  # slack_sdk signs text; Slack's bodies always are, a forger's may not be
        base = b"v0:" + timestamp.encode("ascii") + b":" + body
        return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    assert signature is not None
    return signature


def verify_slack_request(
    signing_secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float | None = None,
    window: float = REPLAY_WINDOW,
) -> str | None:
    """None when the request is genuine and fresh; else why it is refused."""
    if not timestamp or not signature:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
    sent = parse_ascii_int(timestamp, maximum=10**12)
    if sent is None:
        return "X-Slack-Request-Timestamp is not a unix time"
    current = time.time() if now is None else now
    if abs(current - sent) > window:
        return "the request is too old (or from the future): replayed requests are refused"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "the request body is not UTF-8"

    class _At(Clock):  # slack_sdk's verifier asks its clock for the time; give it ours
        def now(self) -> float:
            return current

    if not SignatureVerifier(signing_secret, clock=_At()).is_valid(body, timestamp, signature.strip()):
        return "X-Slack-Signature does not match"
    return None


@dataclass(frozen=True)
class Interaction:
    """A button press (`kind` block_actions) or the deny modal's submission (view_submission)."""

    user_id: str
    user_name: str
    approve: bool
    action_id: str
    # The request_hash of the arguments the message showed; None for buttons posted
    # before buttons carried it.
    request_hash: str | None = None
    kind: str = "block_actions"
    reason: str | None = None  # what the presser typed in the deny modal
    trigger_id: str | None = None  # opens a modal (valid for 3 seconds)
    response_url: str | None = None  # answers the presser in the channel


_HASH_RE = re.compile(r"[0-9a-f]{64}")


def button_value(action: Mapping[str, Any]) -> str:
    """`<action id>:<request_hash>`: a press decides only the arguments the message showed."""
    return f"{action.get('id')}:{action.get('request_hash')}"


def _target(value: Any, field: str) -> tuple[str, str | None]:
    if not isinstance(value, str) or not value or len(value) > 64 + 1 + 64:
        raise InvalidInput("the button carries no action id", field=field)
    target, sep, shown = value.partition(":")
    if not target or len(target) > 64 or (sep and not _HASH_RE.fullmatch(shown)):
        raise InvalidInput("the button's value is not <action id>:<request_hash>", field=field)
    return target, shown or None


def _user(payload: Mapping[str, Any]) -> tuple[str, str]:
    user = payload.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        raise InvalidInput("payload.user.id is missing", field="payload.user")
    name = user.get("username") or user.get("name") or user["id"]
    return user["id"], str(name)


def parse_interaction(body: bytes) -> Interaction:
    """The button press in a block_actions payload, or the deny modal's view_submission
    (form field `payload`, JSON)."""
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    raw = form.get("payload")
    if not raw:
        raise InvalidInput("expected a form field named payload", field="payload")
    try:
        payload = json.loads(raw[0])
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        raise InvalidInput("payload is not valid JSON", field="payload") from None
    refuse_nul(payload, "payload")  # the names and ids in it end up in stored text
    if not isinstance(payload, dict) or payload.get("type") not in ("block_actions", "view_submission"):
        raise InvalidInput("only block_actions and view_submission interactions are handled", field="payload.type")
    if payload["type"] == "view_submission":
        return _parse_submission(payload)
    user_id, user_name = _user(payload)
    pressed = payload.get("actions")
    if not isinstance(pressed, list) or not pressed or not isinstance(pressed[0], dict):
        raise InvalidInput("payload.actions is missing", field="payload.actions")
    button = pressed[0]
    kind = button.get("action_id")
    if kind not in (APPROVE_ACTION, DENY_ACTION):
        raise InvalidInput(f"unknown button {kind!r}", field="payload.actions")
    target, shown = _target(button.get("value"), "payload.actions")
    trigger = payload.get("trigger_id")
    response_url = payload.get("response_url")
    return Interaction(
        user_id=user_id,
        user_name=user_name,
        approve=kind == APPROVE_ACTION,
        action_id=target,
        request_hash=shown,
        trigger_id=trigger if isinstance(trigger, str) and len(trigger) <= 200 else None,
        response_url=response_url if isinstance(response_url, str) and len(response_url) <= 2000 else None,
    )


def _parse_submission(payload: Mapping[str, Any]) -> Interaction:
    user_id, user_name = _user(payload)
    view = payload.get("view")
    if not isinstance(view, dict) or view.get("callback_id") != DENY_MODAL:
        raise InvalidInput("unknown view", field="payload.view")
    target, shown = _target(view.get("private_metadata"), "payload.view.private_metadata")
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    block = values.get(REASON_BLOCK) if isinstance(values, dict) else None
    entry = block.get(REASON_INPUT) if isinstance(block, dict) else None
    reason = entry.get("value") if isinstance(entry, dict) else None
    if not isinstance(reason, str):
        raise InvalidInput("the deny reason is missing", field="payload.view.state")
    return Interaction(
        user_id=user_id,
        user_name=user_name,
        approve=False,
        action_id=target,
        request_hash=shown,
        kind="view_submission",
        reason=reason,
    )


def response_url_allowed(url: str | None, config: SlackConfig) -> bool:
    """Answers go only to Slack's own hooks (or, for a proxy or a test, the configured API host)."""
    if not url:
        return False
    parts, api = urlsplit(url), urlsplit(config.api_url)
    if parts.scheme == "https" and parts.hostname == "hooks.slack.com":
        return True
    return (parts.scheme, parts.netloc) == (api.scheme, api.netloc)


# -- messages ----------------------------------------------------------------------
def _clip(text: str, limit: int = _TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: Any) -> str:
    """Slack mrkdwn treats &, < and > as markup."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _buttons(action: Mapping[str, Any], *, modal: bool) -> ActionsBlock:
    name = f"{action.get('tool')}.{action.get('operation')}"
    risk = str(action.get("risk_level") or "")
    approve_confirm = None
    if risk in CONFIRM_RISKS:
        approve_confirm = ConfirmObject(
            title="Approve this action?",
            text=_clip(f"{name} is {risk} risk. Approve it with the arguments shown?", 300),
            confirm="Approve",
            deny="Cancel",
        )
    # Without a modal to ask for the reason, Deny asks "are you sure?" instead.
    deny_confirm = None
    if not modal:
        deny_confirm = ConfirmObject(
            title="Deny this action?",
            text=_clip(f"Deny {name}? The agent will not run it.", 300),
            confirm="Deny",
            deny="Cancel",
            style="danger",
        )
    return ActionsBlock(
        block_id=f"faramesh:{action.get('id')}"[:255],
        elements=[
            ButtonElement(
                action_id=APPROVE_ACTION,
                text="Approve",
                style="primary",
                value=button_value(action),
                confirm=approve_confirm,
            ),
            ButtonElement(
                action_id=DENY_ACTION,
                text="Deny…" if modal else "Deny",
                style="danger",
                value=button_value(action),
                confirm=deny_confirm,
            ),
        ],
    )


def render_message(
    event_type: str,
    action: Mapping[str, Any] | None,
    *,
    action_id: str | None = None,
    modal: bool = False,
    dashboard_url: str | None = None,
) -> dict[str, Any]:
    """A Block Kit message for one event: a held action gets Approve / Deny buttons; once
    decided, it says who decided, when and why, and has no buttons."""
    if action is None:
        text = f"Faramesh: {event_type} {action_id or ''}".strip()
        return {"text": text, "blocks": [SectionBlock(text=MarkdownTextObject(text=_escape(text))).to_dict()]}
    status = str(action.get("status", ""))
    name = f"{action.get('tool')}.{action.get('operation')}"
    risk = str(action.get("risk_level") or "unknown")
    pending = status == "pending_approval"
    if pending:
        title = {"action.reminder": "Still waiting", "action.escalated": "Escalated"}.get(event_type, "Approval needed")
    else:
        title = _STATUS_TITLES.get(status) or _TITLES.get(event_type, event_type)
    fallback = f"{title}: {name} by {action.get('agent_id')} ({risk} risk) — {action.get('reason')}"
    params = json.dumps(action.get("params", {}), indent=2, ensure_ascii=False, sort_keys=True)
    blocks: list[Block] = [
        HeaderBlock(text=_clip(f"{title}: {name}", 150)),
        SectionBlock(
            fields=[
                MarkdownTextObject(text=_clip(f"*Agent*\n{_escape(action.get('agent_id'))}", 1900)),
                MarkdownTextObject(text=f"*Risk*\n{_RISK_MARK.get(risk, '⚪')} {_escape(risk)}"),
                MarkdownTextObject(text=f"*Status*\n{_escape(status)}"),
                MarkdownTextObject(text=_clip(f"*Rule*\n{_escape(action.get('rule_id') or 'default')}", 1900)),
            ]
        ),
        SectionBlock(text=MarkdownTextObject(text=_clip(f"*Reason*\n{_escape(action.get('reason'))}"))),
        SectionBlock(text=MarkdownTextObject(text=_clip(f"*Params*\n```{_escape(params)}```"))),
    ]
    notes = [f"Action `{action.get('id')}`"]
    if pending:
        approval = action.get("approval") or {}
        quorum = approval.get("quorum") or 1
        if quorum > 1:
            # The service's count of votes for these arguments (an edit resets it).
            notes.append(f"{approval.get('counted') or 0} of {quorum} approvals")
        if approval.get("expires_at"):
            notes.append(f"expires {approval['expires_at']}")
        blocks.append(_buttons(action, modal=modal))
    elif action.get("decided_by"):
        when = action.get("updated_at")
        notes.append(f"{title.lower()} by {_escape(action.get('decided_by'))}" + (f" at {when}" if when else ""))
        if action.get("decision_reason"):
            notes.append(f"reason: {_escape(action.get('decision_reason'))}")
    if dashboard_url:
        notes.append(f"<{dashboard_url}/actions/{action.get('id')}|Open in the dashboard>")
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_clip(" · ".join(notes), 1900))]))
    return {"text": _clip(fallback, 3000), "blocks": [b.to_dict() for b in blocks]}


def deny_modal(action_id: str, request_hash: str | None, title: str) -> dict[str, Any]:
    """The modal Deny opens: the reason typed there reaches the agent as the decision reason."""
    return View(
        type="modal",
        callback_id=DENY_MODAL,
        private_metadata=f"{action_id}:{request_hash}" if request_hash else action_id,
        title="Deny action",
        submit="Deny",
        close="Cancel",
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(text=_clip(f"Deny *{_escape(title)}*? The agent will not run it.", 2900))
            ),
            InputBlock(
                block_id=REASON_BLOCK,
                label="Reason (the agent sees it)",
                element=PlainTextInputElement(action_id=REASON_INPUT, multiline=True, max_length=2000),
            ),
        ],
    ).to_dict()


def interaction_reply(text: str) -> dict[str, Any]:
    """The JSON answer to an interaction: a short message only the presser sees."""
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


def unmapped_user_text(user_id: str) -> str:
    """What a presser whose Slack account is not linked to a Faramesh key is told."""
    return (
        f"Your Slack account ({user_id}) is not linked to a Faramesh approver key, so your press was not recorded. "
        f"To link it, an admin adds `{user_id}: <your key id>` under `users:` in the server's Slack config "
        "(serve --slack-config) and restarts the server. Your key id is shown by `faramesh keys list` and on the "
        "dashboard's Keys page. Until then, decide in the dashboard."
    )

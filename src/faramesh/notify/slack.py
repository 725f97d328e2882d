"""Slack: Block Kit messages with Approve / Deny buttons, and verification of the
interaction requests Slack sends when someone presses one.

Slack signs each request: `X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret,
"v0:{X-Slack-Request-Timestamp}:{raw body}")>`. Requests older (or newer) than five
minutes are refused, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import yaml

from faramesh.errors import InvalidInput
from faramesh.policy.parser import load_plain
from faramesh.validation import parse_ascii_int, refuse_nul

APPROVE_ACTION = "faramesh_approve"
DENY_ACTION = "faramesh_deny"
REPLAY_WINDOW = 300  # seconds
SLACK_USER_RE = re.compile(r"[UW][A-Z0-9]{2,30}")

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
}
_RISK_MARK = {"low": "🟢", "medium": "🟡", "high": "🟠", "critical": "🔴"}
_TEXT_LIMIT = 2900  # Slack refuses section text over 3000 characters


@dataclass(frozen=True)
class SlackConfig:
    signing_secret: str
    users: Mapping[str, str] = field(default_factory=dict)  # Slack user id -> Faramesh key id


def load_slack_config(path: str | Path) -> SlackConfig:
    """Read `serve --slack-config FILE` (YAML or JSON): {signing_secret, users: {U123: key id}}."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = load_plain(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}", field="slack") from None
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{path}: expected a mapping with signing_secret and users", field="slack")
    unknown = set(data) - {"signing_secret", "users"}
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
        if not isinstance(key_id, str) or not key_id.strip():
            raise InvalidInput(f"{path}: users.{user} must be a Faramesh key id", field=f"users.{user}")
        mapped[user] = key_id.strip()
    return SlackConfig(signing_secret=secret.strip(), users=mapped)


# -- request signatures ------------------------------------------------------------
def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(signing_secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


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
    expected = slack_signature(signing_secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        return "X-Slack-Signature does not match"
    return None


@dataclass(frozen=True)
class Interaction:
    user_id: str
    user_name: str
    approve: bool
    action_id: str
    # The request_hash of the arguments the message showed; None for buttons posted
    # before buttons carried it.
    request_hash: str | None = None


_HASH_RE = re.compile(r"[0-9a-f]{64}")


def button_value(action: Mapping[str, Any]) -> str:
    """`<action id>:<request_hash>`: a press decides only the arguments the message showed."""
    return f"{action.get('id')}:{action.get('request_hash')}"


def parse_interaction(body: bytes) -> Interaction:
    """The button press in a block_actions payload (form field `payload`, JSON)."""
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    raw = form.get("payload")
    if not raw:
        raise InvalidInput("expected a form field named payload", field="payload")
    try:
        payload = json.loads(raw[0])
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        raise InvalidInput("payload is not valid JSON", field="payload") from None
    refuse_nul(payload, "payload")  # the names and ids in it end up in stored text
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise InvalidInput("only block_actions interactions are handled", field="payload.type")
    user = payload.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        raise InvalidInput("payload.user.id is missing", field="payload.user")
    pressed = payload.get("actions")
    if not isinstance(pressed, list) or not pressed or not isinstance(pressed[0], dict):
        raise InvalidInput("payload.actions is missing", field="payload.actions")
    button = pressed[0]
    kind = button.get("action_id")
    if kind not in (APPROVE_ACTION, DENY_ACTION):
        raise InvalidInput(f"unknown button {kind!r}", field="payload.actions")
    value = button.get("value")
    if not isinstance(value, str) or not value or len(value) > 64 + 1 + 64:
        raise InvalidInput("the button carries no action id", field="payload.actions")
    target, sep, shown = value.partition(":")
    if not target or len(target) > 64 or (sep and not _HASH_RE.fullmatch(shown)):
        raise InvalidInput("the button's value is not <action id>:<request_hash>", field="payload.actions")
    name = user.get("username") or user.get("name") or user["id"]
    return Interaction(
        user_id=user["id"],
        user_name=str(name),
        approve=kind == APPROVE_ACTION,
        action_id=target,
        request_hash=shown or None,
    )


# -- messages ----------------------------------------------------------------------
def _clip(text: str, limit: int = _TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: Any) -> str:
    """Slack mrkdwn treats &, < and > as markup."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_message(
    event_type: str, action: Mapping[str, Any] | None, *, action_id: str | None = None
) -> dict[str, Any]:
    """A Block Kit message for one event; pending actions get Approve / Deny buttons."""
    if action is None:
        text = f"Faramesh: {event_type} {action_id or ''}".strip()
        return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": _escape(text)}}]}
    status = str(action.get("status", ""))
    name = f"{action.get('tool')}.{action.get('operation')}"
    risk = str(action.get("risk_level") or "unknown")
    pending = status == "pending_approval"
    title = "Approval needed" if pending else _TITLES.get(event_type, event_type)
    fallback = f"{title}: {name} by {action.get('agent_id')} ({risk} risk) — {action.get('reason')}"
    params = json.dumps(action.get("params", {}), indent=2, ensure_ascii=False, sort_keys=True)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(f"{title}: {name}", 150)}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Agent*\n{_escape(action.get('agent_id'))}"},
                {"type": "mrkdwn", "text": f"*Risk*\n{_RISK_MARK.get(risk, '⚪')} {_escape(risk)}"},
                {"type": "mrkdwn", "text": f"*Status*\n{_escape(status)}"},
                {"type": "mrkdwn", "text": f"*Rule*\n{_escape(action.get('rule_id') or 'default')}"},
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(f"*Reason*\n{_escape(action.get('reason'))}")}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(f"*Params*\n```{_escape(params)}```")}},
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
        blocks.append(
            {
                "type": "actions",
                "block_id": f"faramesh:{action.get('id')}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE_ACTION,
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "value": button_value(action),
                    },
                    {
                        "type": "button",
                        "action_id": DENY_ACTION,
                        "text": {"type": "plain_text", "text": "Deny"},
                        "style": "danger",
                        "value": button_value(action),
                    },
                ],
            }
        )
    elif action.get("decided_by"):
        notes.append(f"decided by {_escape(action.get('decided_by'))}")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(" · ".join(notes), 1900)}]})
    return {"text": _clip(fallback, 3000), "blocks": blocks}


def interaction_reply(text: str) -> dict[str, Any]:
    """The JSON answer to an interaction: a short message only the presser sees."""
    return {"response_type": "ephemeral", "replace_original": False, "text": text}

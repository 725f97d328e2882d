"""Outgoing webhooks: which events go where, the body that is sent, and its signature.

Every delivery is signed so a receiver can tell it came from this server and was not
replayed later:

    X-Faramesh-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>

A receiver checks it with `verify_signature(secret, header, body)`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from faramesh.errors import InvalidInput
from faramesh.policy.parser import load_plain
from faramesh.validation import parse_ascii_int, refuse_nul

SIGNATURE_HEADER = "X-Faramesh-Signature"
EVENT_HEADER = "X-Faramesh-Event"
DELIVERY_HEADER = "X-Faramesh-Delivery"
DEFAULT_TOLERANCE = 300  # seconds a signature stays acceptable

# Event types a webhook can ask for. "action.pending_approval" is a filter, not a
# separate event: it selects the action.created events whose action is pending.
EVENT_TYPES = (
    "action.created",
    "action.pending_approval",
    "action.approval_recorded",
    "action.approved",
    "action.denied",
    "action.expired",
    "action.cancelled",
    "action.picked_up",
    "action.reattached",
    "action.started",
    "action.outcome_unknown",
    "action.reconciled",
    "action.succeeded",
    "action.failed",
    "action.reminder",
    "action.escalated",
)
FORMATS = ("json", "slack", "teams")
# What a Slack or Teams channel wants to hear about unless told otherwise.
SLACK_DEFAULT_EVENTS = (
    "action.pending_approval",
    "action.approved",
    "action.denied",
    "action.expired",
    "action.cancelled",
    "action.reminder",
    "action.escalated",
)
MAX_URL = 2000
MAX_SECRET = 500


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    secret: str  # empty: deliveries are not signed (only allowed for format "slack")
    events: tuple[str, ...]
    format: str = "json"
    description: str = ""
    source: str = "api"  # "api" (stored, removable) or "file" (read-only)
    created_at: float | None = None
    created_by: str | None = None

    def wants(self, event_type: str, status: str | None) -> bool:
        if "*" in self.events or event_type in self.events:
            return True
        return (
            "action.pending_approval" in self.events and event_type == "action.created" and status == "pending_approval"
        )

    def to_dict(self) -> dict[str, Any]:
        """What the admin API shows: never the secret."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "format": self.format,
            "description": self.description,
            "source": self.source,
            "read_only": self.source == "file",
            "signed": bool(self.secret),
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


@dataclass
class WebhookSpec:
    """A validated webhook definition, before it gets an id."""

    url: str
    secret: str
    events: tuple[str, ...]
    format: str
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _field(prefix: str, name: str) -> str:
    return f"{prefix}{name}" if prefix else name


def check_spec(raw: Mapping[str, Any], *, prefix: str = "", require_secret: bool = True) -> WebhookSpec:
    """Validate one webhook definition (from the admin API or the webhooks file)."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("a webhook must be a mapping with url, secret, events and format", field=prefix or None)
    unknown = set(raw) - {"url", "secret", "secret_env", "events", "format", "description"}
    if unknown:
        raise InvalidInput(f"unknown webhook field(s): {', '.join(sorted(unknown))}", field=prefix or None)
    refuse_nul(dict(raw), prefix)

    url = raw.get("url")
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("url is required", field=_field(prefix, "url"))
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL:
        raise InvalidInput(f"url must be an http(s) URL of at most {MAX_URL} characters", field=_field(prefix, "url"))

    fmt = raw.get("format", "json")
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}", field=_field(prefix, "format"))

    secret = raw.get("secret")
    secret_env = raw.get("secret_env")
    if secret is None and secret_env is not None:
        if not isinstance(secret_env, str) or not os.environ.get(secret_env):
            raise InvalidInput(
                f"secret_env names an unset environment variable: {secret_env!r}", field=_field(prefix, "secret_env")
            )
        secret = os.environ[secret_env]
    if secret is not None and (not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET):
        raise InvalidInput(f"secret must be a string of 1-{MAX_SECRET} characters", field=_field(prefix, "secret"))
    if secret is None:
        if require_secret and fmt == "json":  # chat channels (slack, teams) take no signature
            raise InvalidInput("secret is required for json webhooks", field=_field(prefix, "secret"))
        secret = ""

    default_events = SLACK_DEFAULT_EVENTS if fmt in ("slack", "teams") else ("*",)
    events_raw = raw.get("events", list(default_events))
    if isinstance(events_raw, str):
        events_raw = [events_raw]
    if not isinstance(events_raw, list) or not events_raw or not all(isinstance(e, str) for e in events_raw):
        raise InvalidInput('events must be a non-empty list of event types, or ["*"]', field=_field(prefix, "events"))
    bad = [e for e in events_raw if e != "*" and e not in EVENT_TYPES]
    if bad:
        raise InvalidInput(
            f"unknown event type(s) {', '.join(bad)}; known: {', '.join(EVENT_TYPES)} or *",
            field=_field(prefix, "events"),
        )
    events = tuple(dict.fromkeys(events_raw))  # keep order, drop repeats

    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > 500:
        raise InvalidInput(
            "description must be a string of at most 500 characters", field=_field(prefix, "description")
        )
    return WebhookSpec(url=url, secret=secret, events=events, format=fmt, description=description)


def file_webhook_id(spec: WebhookSpec) -> str:
    """A stable id for a file-configured webhook, so its delivery log survives restarts."""
    digest = hashlib.sha256("\n".join([spec.url, spec.format, ",".join(spec.events)]).encode()).hexdigest()
    return "file-" + digest[:12]


def load_webhook_file(path: str | Path) -> list[Webhook]:
    """Read `serve --webhooks FILE`: a YAML list of webhooks, or a mapping with a `webhooks:` list."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = load_plain(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}", field="webhooks") from None
    if isinstance(data, Mapping) and set(data) == {"webhooks"}:
        data = data["webhooks"]
    if data is None:
        return []
    if not isinstance(data, list):
        raise InvalidInput(f"{path}: expected a list of webhooks (or webhooks: [...])", field="webhooks")
    hooks: list[Webhook] = []
    seen: set[str] = set()
    for i, raw in enumerate(data):
        spec = check_spec(raw, prefix=f"webhooks[{i}].")
        hook_id = file_webhook_id(spec)
        if hook_id in seen:
            raise InvalidInput(f"{path}: webhooks[{i}] repeats an earlier webhook", field=f"webhooks[{i}]")
        seen.add(hook_id)
        hooks.append(
            Webhook(
                id=hook_id,
                url=spec.url,
                secret=spec.secret,
                events=spec.events,
                format=spec.format,
                description=spec.description,
                source="file",
            )
        )
    return hooks


# -- signatures --------------------------------------------------------------------
def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of f"{timestamp}.{body}" under the webhook's secret."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return mac.hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={sign(secret, t, body)}"


def _parse_header(header: str) -> tuple[int | None, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and (t := parse_ascii_int(value)) is not None:
            timestamp = t
        elif key == "v1" and value:
            signatures.append(value)
    return timestamp, signatures


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> bool:
    """True when `header` (X-Faramesh-Signature) signs exactly `body` with `secret`
    and its timestamp is within `tolerance` seconds of now."""
    if not header or not secret:
        return False
    timestamp, signatures = _parse_header(header)
    if timestamp is None or not signatures:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


# -- bodies ------------------------------------------------------------------------
def public_action(action: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The action as a receiver sees it: never the single-use approval token."""
    if action is None:
        return None
    return {k: v for k, v in action.items() if k != "approval_token"}


def event_payload(
    *,
    seq: int,
    event_type: str,
    action_id: str | None,
    action: Mapping[str, Any] | None,
    at: str,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a `format: json` delivery; `details` (e.g. an escalation's
    `escalate_to`) only for the events that have them."""
    shown = public_action(action)
    body = {
        "id": str(seq),  # the audit seq: also the SSE event id
        "type": event_type,
        "seq": seq,
        "created_at": at,
        "action_id": action_id,
        "status": shown.get("status") if shown else None,
        "action": shown,
    }
    if details:
        body["details"] = dict(details)
    return body


def matching(hooks: Iterable[Webhook], event_type: str, status: str | None) -> list[Webhook]:
    return [h for h in hooks if h.wants(event_type, status)]

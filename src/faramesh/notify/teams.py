"""Microsoft Teams: a `format: teams` webhook posts an Adaptive Card with the action's
summary and a link to it in the dashboard. Decisions are taken in the dashboard (or
Slack, the CLI, the API); the card has no Approve / Deny buttons, because a Teams
incoming webhook cannot tell Faramesh who pressed one.

The body is the message a Teams workflow ("Post to a channel when a webhook request is
received") or an incoming webhook accepts: one attachment holding the card.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CARD_VERSION = "1.4"
_TITLES = {
    "action.created": "Approval needed",
    "action.approval_recorded": "Approval recorded",
    "action.approved": "Approved",
    "action.denied": "Denied",
    "action.expired": "Expired",
    "action.cancelled": "Cancelled",
    "action.succeeded": "Succeeded",
    "action.failed": "Failed",
    "action.reminder": "Still waiting for a decision",
    "action.escalated": "Escalated: waiting for a decision",
}
_RISK_COLOR = {"low": "Good", "medium": "Warning", "high": "Attention", "critical": "Attention"}
_TEXT_LIMIT = 1000


def _clip(value: Any, limit: int = _TEXT_LIMIT) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(value: Any, limit: int = _TEXT_LIMIT) -> str:
    """Card text is Markdown-ish: keep values literal (no links, emphasis or lists from an agent)."""
    text = _clip(value, limit)
    for ch in "\\*_[]()#>`~-":
        text = text.replace(ch, "\\" + ch)
    return text


def render_card(
    event_type: str,
    action: Mapping[str, Any] | None,
    *,
    action_id: str | None = None,
    dashboard_url: str | None = None,
) -> dict[str, Any]:
    """The Teams message for one event: an Adaptive Card with the summary and a dashboard link."""
    target = (action or {}).get("id") or action_id
    name = f"{(action or {}).get('tool')}.{(action or {}).get('operation')}" if action else str(target)
    title = _TITLES.get(event_type, event_type)
    risk = str((action or {}).get("risk_level") or "unknown")
    facts = []
    if action is not None:
        facts = [
            {"title": "Agent", "value": _plain(action.get("agent_id"), 200)},
            {"title": "Risk", "value": _plain(risk, 20)},
            {"title": "Status", "value": _plain(action.get("status"), 40)},
            {"title": "Reason", "value": _plain(action.get("reason"))},
        ]
        if action.get("decided_by"):
            facts.append({"title": "Decided by", "value": _plain(action.get("decided_by"), 300)})
        approval = action.get("approval") or {}
        if approval.get("expires_at") and action.get("status") == "pending_approval":
            facts.append({"title": "Expires", "value": _plain(approval["expires_at"], 40)})
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "size": "Medium",
            "weight": "Bolder",
            "wrap": True,
            "text": _plain(f"{title}: {name}", 300),
            "color": _RISK_COLOR.get(risk, "Default"),
        },
        {"type": "FactSet", "facts": facts},
        {"type": "TextBlock", "isSubtle": True, "wrap": True, "text": _plain(f"Action {target}", 200)},
    ]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
    }
    if dashboard_url and target:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open in the dashboard", "url": f"{dashboard_url}/actions/{target}"}
        ]
    else:
        body.append({"type": "TextBlock", "wrap": True, "isSubtle": True, "text": "Decide in the Faramesh dashboard."})
    return {
        "type": "message",
        "summary": _clip(f"{title}: {name}", 200),
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }

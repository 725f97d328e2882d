"""Templates, display filters and the headers every dashboard page carries."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

# Pages may load scripts, styles and images from this server only: no inline code,
# so a hostile string that slips into markup still cannot run.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "Cache-Control": "no-store",  # pages show live, sensitive data
}

RISKS = ("low", "medium", "high", "critical")
STATUS_LABELS = {
    "pending_approval": "Pending approval",
    "allowed": "Allowed",
    "denied": "Denied",
    "approved": "Approved",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "executing": "Executing",
    "outcome_unknown": "Outcome unknown",
}
EVENT_LABELS = {
    "action.submitted": "Submitted",
    "action.approval_recorded": "Approval recorded",
    "action.approved": "Approved",
    "action.denied": "Denied",
    "action.expired": "Expired",
    "action.cancelled": "Cancelled",
    "action.picked_up": "Agent picked up the approval",
    "action.reattached": "Agent retried; re-attached",
    "action.started": "Agent started it",
    "action.permit_renewed": "Permit renewed",
    "action.outcome_unknown": "Outcome unknown: no result within the execution lease",
    "action.reconciled": "Reconciled",
    "action.succeeded": "Result: succeeded",
    "action.failed": "Result: failed",
    "action.reminder": "Reminder sent",
    "action.escalated": "Escalated",
}


def parse_iso(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def relative(seconds: float) -> str:
    """A short, human span: 42s, 5m, 3h 10m, 2d."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        h, m = divmod(seconds // 60, 60)
        return f"{h}h {m}m" if m else f"{h}h"
    return f"{seconds // 86400}d"


def age(value: str | None, now: float | None = None) -> str:
    ts = parse_iso(value)
    if ts is None:
        return ""
    return relative((now or time.time()) - ts) + " ago"


def time_left(value: str | None, now: float | None = None) -> str:
    ts = parse_iso(value)
    if ts is None:
        return ""
    left = ts - (now or time.time())
    return relative(left) + " left" if left > 0 else "expiring"


def when(value: str | float | None) -> str:
    """An absolute UTC time a person can read: 2025-01-31 14:05:09 UTC."""
    ts = value if isinstance(value, (int, float)) else parse_iso(value)
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty_json(value: Any) -> str:
    # Returned as plain text; Jinja's autoescaping makes markup in values inert.
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def risk_class(risk: str | None) -> str:
    return f"risk-{risk}" if risk in RISKS else "risk-unknown"


def status_label(status: str | None) -> str:
    return STATUS_LABELS.get(status or "", status or "")


def event_label(event: str | None) -> str:
    return EVENT_LABELS.get(event or "", event or "")


def approvals_given(action: Mapping[str, Any]) -> int:
    """The votes that count toward the quorum, as the service counted them (never recounted here)."""
    return int((action.get("approval") or {}).get("counted") or 0)


def _asset_versions() -> dict[str, str]:
    """Content hashes for cache-busting static URLs (computed once at import)."""
    versions = {}
    for path in STATIC_DIR.iterdir():
        if path.is_file():
            versions[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return versions


_VERSIONS = _asset_versions()


def static_url(name: str) -> str:
    return f"/static/{name}?v={_VERSIONS.get(name, '0')}"


env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(
    age=age,
    time_left=time_left,
    when=when,
    pretty_json=pretty_json,
    risk_class=risk_class,
    status_label=status_label,
    event_label=event_label,
)
env.globals.update(static_url=static_url, approvals_given=approvals_given, RISKS=RISKS, STATUS_LABELS=STATUS_LABELS)


def render(request: Request, template: str, context: Mapping[str, Any] | None = None, status: int = 200) -> Response:
    """Render a page with the signed-in user, the CSRF token and any one-time message."""
    session = request.state.web_session
    ctx: dict[str, Any] = {
        "user": getattr(request.state, "web_user", None),
        "csrf_token": session.csrf,
        "flash": session.pop_flash(),
        "path": request.url.path,
        "pending_count": getattr(request.state, "pending_count", None),
    }
    ctx.update(context or {})
    html = env.get_template(template).render(**ctx)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

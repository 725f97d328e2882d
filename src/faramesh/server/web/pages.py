"""Dashboard pages: login, the pending queue, action detail and decisions, history.

Every read and every decision goes through the Governor, exactly as the /v1 API does;
these handlers only turn forms into service calls and results into HTML.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from faramesh import service_reads
from faramesh.errors import Conflict, ErrorCode, FarameshError, NotFound
from faramesh.model import Identity, Status
from faramesh.server.web import sso
from faramesh.server.web.guard import (
    LoginRequired,
    WebRoute,
    codec,
    read_form,
    redirect,
    require_user,
    safe_next,
    session_of,
)
from faramesh.server.web.oidc import Tokens
from faramesh.server.web.render import RISKS, pretty_json, render
from faramesh.server.web.session import Session, logged_in
from faramesh.server.web.summary import arg_summary, args_line, presence_text, rule_fields
from faramesh.service import Governor, grants
from faramesh.validation import parse_ascii_int

router = APIRouter(route_class=WebRoute, include_in_schema=False)

QUEUE_LIMIT = 200
RECONCILE_LIMIT = 50
HISTORY_PAGE = 50
MAX_KEY_LENGTH = 512
HASH_RE = re.compile(r"[0-9a-f]{64}")
STALE_FORM = (
    "The arguments of this action changed since you opened this page (another approver edited them). "
    "Your {verb} was not recorded. Compare the arguments below, then decide again."
)


def gov(request: Request) -> Governor:
    governor: Governor = request.app.state.governor
    return governor


async def page_user(request: Request, *, admin: bool = False) -> Identity:
    """The signed-in user, plus the pending count every page shows in its navigation."""
    user = await require_user(request, admin=admin)
    request.state.pending_count = await run_in_threadpool(service_reads.pending_count, gov(request))
    return user


# -- login -------------------------------------------------------------------------
def login_page(request: Request, nxt: str, error: str | None = None, status: int = 200) -> Response:
    """The login page: single sign-on when configured, the API key form unless turned off."""
    rt = sso.runtime(request)
    sso_url = "/login/oidc" + ("?" + urlencode({"next": nxt}) if nxt != "/" else "")
    context = {"next": nxt, "error": error, "sso_url": sso_url if rt.enabled else None, "key_login": rt.key_login}
    return render(request, "login.html", context, status=status)


@router.get("/login")
async def login_form(request: Request) -> Response:
    try:
        await require_user(request)
    except LoginRequired:
        return login_page(request, safe_next(request.query_params.get("next")))
    return redirect("/")


@router.post("/login")
async def login(request: Request) -> Response:
    if not sso.runtime(request).key_login:  # refused before anything is read
        error = "Key login to the dashboard is turned off on this server. Sign in with single sign-on."
        return login_page(request, "/", error, status=403)
    form = await read_form(request)
    secret = form.get("key")
    nxt = safe_next(form.get("next"))
    identity = None
    if isinstance(secret, str) and 0 < len(secret.strip()) <= MAX_KEY_LENGTH:
        key = secret.strip()
        identity = await run_in_threadpool(service_reads.authenticate, gov(request), key)
    if identity is None:
        return login_page(request, nxt, "That key is not valid or has been revoked.", status=401)
    if not identity.can_decide:
        error = "Agent keys cannot log in to the dashboard. Use an approver or admin key."
        return login_page(request, nxt, error, status=403)
    previous = session_of(request)
    if previous.kid is not None or previous.pid is not None:
        codec(request).end(previous)
    request.state.web_session = logged_in(identity, codec(request).lifetime)
    return redirect(nxt)


@router.post("/logout")
async def logout(request: Request) -> Response:
    await read_form(request)
    old = session_of(request)
    codec(request).end(old)
    fresh = Session(expires=old.expires, dirty=True)
    request.state.web_session = fresh
    if old.pid is not None:
        # Ended in the database, so on every replica; then offer the provider's own logout.
        end_url = await sso_logout(request, old.pid)
        if end_url is not None:
            return render(request, "signed_out.html", {"end_session_url": end_url})
    fresh.set_flash("ok", "You have logged out.")
    return redirect("/login")


async def sso_logout(request: Request, session_id: str) -> str | None:
    """End a person's session; the provider's end-session URL to offer, if it has one."""
    g, rt = gov(request), sso.runtime(request)
    state = await run_in_threadpool(g.person_session, session_id)
    sealed = await run_in_threadpool(g.sign_out_person, session_id, state.identity if state else None)
    if rt.client is None or rt.config is None:
        return None
    plain = codec(request).unseal(sealed) if sealed else None
    tokens = Tokens.from_json(plain) if plain else None
    return await rt.client.end_session_url(tokens, sso.base_url(request, rt.config) + "/login")


# -- queue -------------------------------------------------------------------------
QUEUE_SORTS = {
    "newest": "Newest first",
    "oldest": "Oldest first",
    "risk": "Highest risk first",
    "expiry": "Expiring soonest",
}
QUEUE_FILTERS = ("tool", "agent", "risk", "sort")
_RISK_ORDER = {risk: i for i, risk in enumerate(reversed(RISKS))}


def _sorted(items: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    """The queue in the chosen order (items arrive newest first)."""
    if sort == "oldest":
        return list(reversed(items))
    if sort == "risk":
        return sorted(items, key=lambda a: _RISK_ORDER.get(a.get("risk_level") or "", len(RISKS)))
    if sort == "expiry":
        never = "9999"
        return sorted(items, key=lambda a: (a.get("approval") or {}).get("expires_at") or never)
    return items


def queue_rows(g: Governor, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each held action with what its row shows beside it: the arguments that matter
    (the fields its rule tests first) and whether its agent is still waiting."""
    fields = rule_fields(g.policy)
    rows = []
    for a in items:
        args = arg_summary(a.get("params"), fields.get(a.get("rule_id") or "", ()))
        rows.append({"a": a, "args": args, "args_line": args_line(args), "presence": presence_text(a.get("presence"))})
    return rows


@router.get("/")
async def queue(request: Request) -> Response:
    user = await page_user(request)
    g = gov(request)
    qp = request.query_params
    filters = {name: (qp.get(name) or "").strip()[:200] for name in QUEUE_FILTERS}
    problems = []
    if filters["risk"] and filters["risk"] not in RISKS:
        problems.append(f"Unknown risk {filters['risk']!r}.")
        filters["risk"] = ""
    if filters["sort"] not in QUEUE_SORTS:
        filters["sort"] = "newest"
    # Read the event position first: the page's live stream replays anything after it,
    # so nothing that happens between this read and the browser connecting is lost.
    after = await run_in_threadpool(service_reads.audit_position, g)
    items, more = await run_in_threadpool(
        lambda: g.list_actions(
            user,
            status=Status.PENDING_APPROVAL.value,
            tool=filters["tool"] or None,
            agent_id=filters["agent"] or None,
            risk=filters["risk"] or None,
            limit=QUEUE_LIMIT,
        )
    )
    filtered = any(filters[k] for k in ("tool", "agent", "risk"))
    # Started and never reported: someone has to say whether they ran before an identical retry may.
    unknown, more_unknown = await run_in_threadpool(
        lambda: g.list_actions(user, status=Status.OUTCOME_UNKNOWN.value, limit=RECONCILE_LIMIT)
    )
    return render(
        request,
        "queue.html",
        {
            "rows": queue_rows(g, _sorted(items, filters["sort"])),
            "more": more is not None,
            "events_url": f"/ui/events?after={after}",
            "limit": QUEUE_LIMIT,
            "filters": filters,
            "filtered": filtered,
            "problems": problems,
            "sorts": QUEUE_SORTS,
            "unknown": unknown,
            "more_unknown": more_unknown is not None,
        },
    )


# -- action detail and decisions -----------------------------------------------------
@router.get("/actions/{action_id}")
async def action_detail(action_id: str, request: Request) -> Response:
    user = await page_user(request)
    return await render_action(request, user, action_id)


GRANT_DURATIONS = {"15m": "15 minutes", "1h": "1 hour", "8h": "8 hours (a working day)"}


async def render_action(
    request: Request, user: Identity, action_id: str, extra: dict[str, Any] | None = None, status: int = 200
) -> Response:
    """The action page; `extra` adds to its context (an edit under review)."""
    g = gov(request)
    after = await run_in_threadpool(service_reads.audit_position, g)
    action = await run_in_threadpool(g.get, user, action_id)
    timeline = await run_in_threadpool(g.events, user, action_id)
    # After a vote refused because the arguments changed: what the approver saw, beside the new ones.
    seen = request.query_params.get("seen") or ""
    seen_params: dict[str, Any] | None = None
    if HASH_RE.fullmatch(seen) and seen != action["request_hash"]:
        seen_params = await run_in_threadpool(g.params_for_hash, user, action_id, seen)
    fields = rule_fields(g.policy).get(action.get("rule_id") or "", ())
    approval = action.get("approval") or {}
    grant_conditions = None
    if action["status"] == Status.PENDING_APPROVAL.value and approval.get("quorum", 1) == 1:
        # A grant never applies to a rule needing several approvers, so it is offered only here.
        grant_conditions = grants.same_as(action["params"], tuple("params." + f for f in fields))
    return render(
        request,
        "action.html",
        {
            "a": action,
            "timeline": timeline,
            "seen_hash": seen if seen_params is not None else None,
            "seen_params": seen_params,
            "active_policy_hash": g.policy.hash,
            "events_url": "/ui/events?" + urlencode({"after": after, "action": action["id"]}),
            "edit_fields": edit_fields(action["params"]),
            "grant_conditions": grant_conditions,
            "grant_text": grants.describe(grant_conditions) if grant_conditions is not None else None,
            "grant_durations": GRANT_DURATIONS,
        }
        | (extra or {}),
        status=status,
    )


MAX_FIELD_INPUTS = 60  # beyond this, params are edited as JSON only (the form would be too long)


def edit_fields(params: Any) -> list[dict[str, Any]] | None:
    """The params as per-field inputs: strings as typed, numbers, true/false, other values as
    JSON; None when there are too many fields to edit one by one."""
    if len(params or {}) > MAX_FIELD_INPUTS:
        return None
    out = []
    for key, value in (params or {}).items():
        if isinstance(value, bool):
            kind, text = "bool", "true" if value else "false"
        elif isinstance(value, (int, float)):
            kind, text = "number", pretty_json(value)
        elif isinstance(value, str):
            kind, text = "string", value
        else:
            kind, text = "json", pretty_json(value)
        out.append({"key": key, "kind": kind, "text": text})
    return out


def _conflict_message(action: dict[str, Any] | None, exc: Conflict, verb: str) -> str:
    """Say plainly who got there first instead of showing an error page."""
    if action is None:
        return exc.message
    status = action["status"]
    if status == Status.PENDING_APPROVAL.value:
        # Still pending: this person already voted and the quorum is not reached.
        return f"You have already decided on this action; it is still waiting for other approvers. ({exc.message})"
    who = action.get("decided_by")
    if status in (Status.APPROVED.value, Status.DENIED.value) and who == "system:expiry":
        return f"Too late to {verb}: {action.get('decision_reason') or 'the approval window expired'}."
    label = {"approved": "approved", "denied": "denied"}.get(status, status.replace("_", " "))
    if who:
        return f"Already {label} by {who}."
    return f"Already {label}; this action is no longer waiting for a decision."


@router.post("/actions/{action_id}/decide")
async def decide(action_id: str, request: Request) -> Response:
    user = await require_user(request)
    form = await read_form(request)
    g = gov(request)
    session = session_of(request)
    back = f"/actions/{action_id}"
    choice = form.get("decision")
    raw_reason = form.get("reason")
    reason = raw_reason.strip() if isinstance(raw_reason, str) else ""
    if choice not in ("approve", "deny"):
        session.set_flash("error", "Choose Approve or Deny.")
        return redirect(back)
    if choice == "deny" and not reason:
        session.set_flash("error", "A reason is required to deny. Say why, then press Deny again.")
        return redirect(back)
    # The vote is bound to the arguments the page showed; a form without them decides nothing.
    shown = form.get("request_hash")
    if not isinstance(shown, str) or not HASH_RE.fullmatch(shown):
        session.set_flash("error", "This form is out of date: review the action's arguments and decide again.")
        return redirect(back)
    decide_fn = g.approve if choice == "approve" else g.deny
    try:
        result = await run_in_threadpool(lambda: decide_fn(user, action_id, reason=reason or None, expected_hash=shown))
    except NotFound:
        raise
    except Conflict as exc:
        if exc.code is ErrorCode.REQUEST_HASH_MISMATCH:
            session.set_flash("error", STALE_FORM.format(verb="approval" if choice == "approve" else "denial"))
            return redirect(back + "?" + urlencode({"seen": shown}))
        try:
            current: dict[str, Any] | None = await run_in_threadpool(g.get, user, action_id)
        except FarameshError:
            current = None
        session.set_flash("error", _conflict_message(current, exc, choice))
        return redirect(back)
    except FarameshError as exc:  # not allowed to decide this one (own action, group), bad reason
        session.set_flash("error", exc.message)
        return redirect(back)
    if result["status"] == Status.PENDING_APPROVAL.value:
        approval = result.get("approval") or {}
        quorum, given = approval.get("quorum", 1), approval.get("counted", 0)
        session.set_flash("ok", f"Your approval was recorded: {given} of {quorum} needed.")
    else:
        session.set_flash("ok", "Approved." if choice == "approve" else "Denied.")
    return redirect(back)


@router.post("/actions/{action_id}/reconcile")
async def reconcile(action_id: str, request: Request) -> Response:
    """A person says what became of an action whose outcome is unknown."""
    user = await require_user(request)
    form = await read_form(request)
    session = session_of(request)
    back = f"/actions/{action_id}"
    outcome = form.get("outcome")
    raw_reason = form.get("reason")
    reason = raw_reason.strip() if isinstance(raw_reason, str) else ""
    if outcome not in ("succeeded", "failed"):
        session.set_flash("error", "Choose whether it ran (succeeded) or not (failed).")
        return redirect(back)
    if not reason:
        session.set_flash("error", "Say how you know what happened, then choose again.")
        return redirect(back)
    try:
        await run_in_threadpool(lambda: gov(request).reconcile(user, action_id, outcome=outcome, reason=reason))
    except NotFound:
        raise
    except FarameshError as exc:  # already reconciled, reported meanwhile, bad reason
        session.set_flash("error", exc.message)
        return redirect(back)
    session.set_flash("ok", f"Recorded: it {outcome}.")
    return redirect(back)


# -- history -----------------------------------------------------------------------
def _parse_time(value: str | None) -> float | None:
    """A datetime-local or date value, read as UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


HISTORY_FILTERS = ("q", "status", "tool", "agent", "risk", "since", "until")
FULL_ID_LENGTH = 36  # a UUID in its usual text form


@router.get("/history")
async def history(request: Request) -> Response:
    user = await page_user(request)
    g = gov(request)
    qp = request.query_params
    filters = {name: (qp.get(name) or "").strip()[:200] for name in HISTORY_FILTERS}
    problems = []
    if filters["status"] and filters["status"] not in {s.value for s in Status}:
        problems.append(f"Unknown status {filters['status']!r}.")
        filters["status"] = ""
    if filters["risk"] and filters["risk"] not in RISKS:
        problems.append(f"Unknown risk {filters['risk']!r}.")
        filters["risk"] = ""
    since, until = _parse_time(filters["since"]), _parse_time(filters["until"])
    for name, parsed in (("since", since), ("until", until)):
        if filters[name] and parsed is None:
            problems.append(f"Could not read the time {filters[name]!r}.")
            filters[name] = ""
    if filters["q"] and len(filters["q"]) == FULL_ID_LENGTH and not any(filters[k] for k in HISTORY_FILTERS[1:]):
        # A whole id pasted into the search box: go straight to that action.
        try:
            found = await run_in_threadpool(g.get, user, filters["q"])
        except NotFound:
            found = None
        if found is not None:
            return redirect(f"/actions/{found['id']}")
    cursor_raw = qp.get("cursor")
    cursor = parse_ascii_int(cursor_raw)
    items, next_cursor = await run_in_threadpool(
        lambda: g.list_actions(
            user,
            status=filters["status"] or None,
            tool=filters["tool"] or None,
            agent_id=filters["agent"] or None,
            risk=filters["risk"] or None,
            id_prefix=filters["q"][:64] or None,
            since=since,
            until=until,
            limit=HISTORY_PAGE,
            cursor=cursor,
        )
    )
    kept = {k: v for k, v in filters.items() if v}
    older = "/history?" + urlencode({**kept, "cursor": next_cursor}) if next_cursor is not None else None
    newest = "/history" + ("?" + urlencode(kept) if kept else "") if cursor is not None else None
    return render(
        request,
        "history.html",
        {
            "items": items,
            "filters": filters,
            "problems": problems,
            "older_url": older,
            "newest_url": newest,
            "statuses": [s.value for s in Status],
        },
    )

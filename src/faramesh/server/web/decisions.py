"""Dashboard decisions beyond one click: approve with edits (review a diff, approve exactly
that), approve and grant the same for a while, decide several queue rows at once, and
the grants page. Forms in, service calls out; the rules are in faramesh.service."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from faramesh import jsonstrict
from faramesh.errors import Conflict, ErrorCode, FarameshError, InvalidInput, NotFound
from faramesh.model import Identity, Status
from faramesh.server.web.guard import WebRoute, read_form, redirect, require_user, session_of
from faramesh.server.web.pages import (
    GRANT_DURATIONS,
    HASH_RE,
    STALE_FORM,
    _conflict_message,
    edit_fields,
    gov,
    page_user,
    render_action,
)
from faramesh.server.web.render import pretty_json, render, when
from faramesh.server.web.summary import rule_fields
from faramesh.service import bulk, edits, grants
from faramesh.validation import parse_ascii_int

router = APIRouter(route_class=WebRoute, include_in_schema=False)

MAX_EDIT_FIELDS = 80


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


async def _refused(request: Request, user: Identity, action_id: str, exc: Conflict, verb: str, shown: str) -> Response:
    """Where a refused vote leads: the stale-arguments view, or who got there first."""
    session = session_of(request)
    back = f"/actions/{action_id}"
    if exc.code is ErrorCode.REQUEST_HASH_MISMATCH:
        session.set_flash("error", STALE_FORM.format(verb=verb))
        return redirect(back + "?" + urlencode({"seen": shown}))
    try:
        current: dict[str, Any] | None = await run_in_threadpool(gov(request).get, user, action_id)
    except FarameshError:
        current = None
    session.set_flash("error", _conflict_message(current, exc, "approve"))
    return redirect(back)


# -- approve with edits --------------------------------------------------------------
def parse_edit(original: dict[str, Any], form: FormData) -> dict[str, Any]:
    """The edited params from the form: as one JSON object, or field by field (each value
    read as the type the field had: a string as typed, a number, true/false, or JSON)."""
    if _text(form, "mode") == "json":
        return _json_object(form.get("params_json"), "params")
    edited: dict[str, Any] = {}
    for key, value in original.items():
        raw = form.get(f"f.{key}")
        if not isinstance(raw, str):
            raise InvalidInput(f"the form has no value for {key}", field=f"params.{key}")
        if isinstance(value, str):
            edited[key] = raw
        elif isinstance(value, bool):
            if raw not in ("true", "false"):
                raise InvalidInput(f"{key} must be true or false", field=f"params.{key}")
            edited[key] = raw == "true"
        else:
            try:
                parsed = jsonstrict.loads(raw.strip())
            except ValueError as exc:
                raise InvalidInput(f"{key}: not valid JSON ({exc})", field=f"params.{key}") from None
            if isinstance(value, (int, float)) and (isinstance(parsed, bool) or not isinstance(parsed, (int, float))):
                raise InvalidInput(f"{key} must be a number", field=f"params.{key}")
            edited[key] = parsed
    return edited


def _json_object(raw: Any, field: str) -> dict[str, Any]:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("enter the params as a JSON object", field=field)
    try:
        value = jsonstrict.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"not valid JSON: {exc}", field=field) from None
    if not isinstance(value, dict):
        raise InvalidInput("the params must be a JSON object ({...})", field=field)
    return value


@router.post("/actions/{action_id}/edit")
async def edit_preview(action_id: str, request: Request) -> Response:
    """Show what the edit changes, and the request hash an approval of it binds to."""
    user = await page_user(request)
    form = await read_form(request, max_fields=MAX_EDIT_FIELDS)
    g = gov(request)
    session = session_of(request)
    back = f"/actions/{action_id}"
    shown = _text(form, "request_hash")
    action = await run_in_threadpool(g.get, user, action_id)
    if action["status"] != Status.PENDING_APPROVAL.value:
        session.set_flash("error", _conflict_message(action, Conflict("not pending"), "approve"))
        return redirect(back)
    if not HASH_RE.fullmatch(shown):
        session.set_flash("error", "This form is out of date: review the action's arguments and edit again.")
        return redirect(back)
    if shown != action["request_hash"]:
        session.set_flash("error", STALE_FORM.format(verb="edit"))
        return redirect(back + "?" + urlencode({"seen": shown}))
    mode = "json" if _text(form, "mode") == "json" else "fields"
    try:
        params = edits.check_params(parse_edit(action["params"], form))
    except InvalidInput as exc:
        typed = form.get("params_json") if mode == "json" else None
        failed: dict[str, Any] = {"edit_error": exc.message, "edit_mode": mode, "edit_json": typed}
        return await render_action(request, user, action_id, failed, status=422)
    preview = {
        "params": params,
        "params_json": pretty_json(params),
        "changes": edits.diff(action["params"], params),
        "hash": edits.edited_hash(action, params),
        "shown": shown,
    }
    reviewed: dict[str, Any] = {"preview": preview, "edit_mode": mode, "edit_fields": edit_fields(params)}
    return await render_action(request, user, action_id, reviewed)


@router.post("/actions/{action_id}/approve-edited")
async def approve_edited(action_id: str, request: Request) -> Response:
    user = await require_user(request)
    form = await read_form(request)
    g = gov(request)
    session = session_of(request)
    back = f"/actions/{action_id}"
    shown, reviewed = _text(form, "request_hash"), _text(form, "edited_hash")
    if not HASH_RE.fullmatch(shown) or not HASH_RE.fullmatch(reviewed):
        session.set_flash("error", "This form is out of date: review the changes and approve again.")
        return redirect(back)
    try:
        params = _json_object(form.get("params_json"), "params")
        result = await run_in_threadpool(
            lambda: edits.approve_edited(
                g,
                user,
                action_id,
                params=params,
                shown_hash=shown,
                reviewed_hash=reviewed,
                reason=_text(form, "reason") or None,
            )
        )
    except NotFound:
        raise
    except Conflict as exc:
        return await _refused(request, user, action_id, exc, "approval", shown)
    except FarameshError as exc:  # the policy refuses the edited params, a limit, a bad form
        session.set_flash("error", f"Not approved: {exc.message}")
        return redirect(back)
    if result["status"] == Status.PENDING_APPROVAL.value:
        approval = result.get("approval") or {}
        session.set_flash(
            "ok",
            "Your approval of the changed arguments was recorded: "
            f"{approval.get('counted', 0)} of {approval.get('quorum', 1)} needed.",
        )
    else:
        session.set_flash("ok", "Approved with your changes.")
    return redirect(back)


# -- approve, and allow the same for a while ------------------------------------------
@router.post("/actions/{action_id}/approve-and-grant")
async def approve_and_grant(action_id: str, request: Request) -> Response:
    user = await require_user(request)
    form = await read_form(request)
    g = gov(request)
    session = session_of(request)
    back = f"/actions/{action_id}"
    shown = _text(form, "request_hash")
    duration = _text(form, "duration")
    max_uses_raw = _text(form, "max_uses")
    max_uses = parse_ascii_int(max_uses_raw) if max_uses_raw else None
    if not HASH_RE.fullmatch(shown):
        session.set_flash("error", "This form is out of date: review the action's arguments and decide again.")
        return redirect(back)
    if duration not in GRANT_DURATIONS or (max_uses_raw and not max_uses):
        session.set_flash("error", "Choose how long to allow the same, and a whole number of uses (or none).")
        return redirect(back)
    reason = _text(form, "reason") or None
    try:
        action = await run_in_threadpool(lambda: g.approve(user, action_id, reason=reason, expected_hash=shown))
    except NotFound:
        raise
    except Conflict as exc:
        return await _refused(request, user, action_id, exc, "approval", shown)
    except FarameshError as exc:
        session.set_flash("error", exc.message)
        return redirect(back)
    fields = rule_fields(g.policy).get(action.get("rule_id") or "", ())
    conditions = grants.same_as(action["params"], tuple("params." + f for f in fields))
    try:
        spec = grants.check_spec(
            tool=action["tool"],
            operation=action["operation"],
            agent_id=action["agent_id"],
            params=conditions,
            expires_in=duration,
            max_uses=max_uses,
            reason=reason or f"The same as action {action_id}, approved by {user.label}",
        )
        made = await run_in_threadpool(lambda: g.create_grant(user, spec, action_id=action_id))
    except FarameshError as exc:
        session.set_flash("error", f"Approved, but the grant was not created: {exc.message}")
        return redirect(back)
    uses = f", at most {max_uses} times" if max_uses else ""
    verb = "Approved" if action["status"] == Status.APPROVED.value else "Your approval was recorded"
    session.set_flash(
        "ok",
        f"{verb}. Grant {made['id']} allows the same ({grants.describe(conditions)}) for {action['agent_id']} "
        f"until {when(made['expires_at'])}{uses}.",
    )
    return redirect(back)


# -- several at once -----------------------------------------------------------------
@router.post("/queue/decide")
async def bulk_decide(request: Request) -> Response:
    user = await page_user(request)
    form = await read_form(request, max_fields=bulk.MAX_BULK + 10)
    g = gov(request)
    session = session_of(request)
    choice = form.get("decision")
    reason = _text(form, "reason") or None
    if choice not in ("approve", "deny"):
        session.set_flash("error", "Choose Approve selected or Deny selected.")
        return redirect("/")
    try:
        picks = [bulk.parse_pick(str(v)) for v in form.getlist("pick")]
        outcomes = await run_in_threadpool(
            lambda: bulk.decide_many(g, user, picks, approve=choice == "approve", reason=reason)
        )
    except InvalidInput as exc:
        session.set_flash("error", exc.message[0].upper() + exc.message[1:] + ".")
        return redirect("/")
    decided = sum(1 for o in outcomes if o.decided)
    return render(
        request,
        "bulk.html",
        {
            "outcomes": outcomes,
            "decided": decided,
            "refused": len(outcomes) - decided,
            "verb": "approve" if choice == "approve" else "deny",
        },
    )


# -- grants ----------------------------------------------------------------------------
@router.get("/grants")
async def grants_page(request: Request) -> Response:
    user = await page_user(request)
    listed = await run_in_threadpool(gov(request).list_grants, user)
    listed.sort(key=lambda x: not x["active"])
    for item in listed:
        item["conditions_text"] = grants.describe(item["params"])
    return render(request, "grants.html", {"grants": listed})


@router.post("/grants/{grant_id}/revoke")
async def revoke_grant(grant_id: str, request: Request) -> Response:
    user = await require_user(request)
    await read_form(request)
    session = session_of(request)
    try:
        done = await run_in_threadpool(gov(request).revoke_grant, user, grant_id[:32])
    except FarameshError as exc:
        session.set_flash("error", exc.message)
        return redirect("/grants")
    session.set_flash("ok", f"Grant {done['id']} is revoked: held actions are no longer approved by it.")
    return redirect("/grants")

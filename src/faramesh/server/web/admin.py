"""The policy page (approvers and admins) and the admin pages: API keys and webhooks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import YamlLexer
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from faramesh.errors import FarameshError
from faramesh.model import Role
from faramesh.notify.deliveries import row_to_webhook
from faramesh.policy import Policy
from faramesh.server.web.guard import WebRoute, read_form, redirect, session_of
from faramesh.server.web.pages import gov, page_user
from faramesh.server.web.render import render
from faramesh.service import Governor
from faramesh.service import webhooks as stored_webhooks

router = APIRouter(route_class=WebRoute, include_in_schema=False)

_FORMATTER = HtmlFormatter(linenos="inline", lineanchors="L", wrapcode=True, cssclass="highlight")
_highlight_cache: dict[str, Markup] = {}


def highlighted_source(policy: Policy) -> Markup:
    """The policy's YAML as HTML with token classes (Pygments escapes the text itself)."""
    cached = _highlight_cache.get(policy.hash + policy.source)
    if cached is None:
        cached = Markup(highlight(policy.source_text, YamlLexer(), _FORMATTER))
        _highlight_cache.clear()  # only the active policy is ever shown
        _highlight_cache[policy.hash + policy.source] = cached
    return cached


@router.get("/policy")
async def policy_page(request: Request) -> Response:
    await page_user(request)
    g = gov(request)
    policy = g.policy
    return render(
        request,
        "policy.html",
        {
            "policy": policy,
            "loaded_at": g.policy_loaded_at,
            "source_html": highlighted_source(policy),
            "shadow": _shadow(request),
        },
    )


def _shadow(request: Request) -> dict[str, Any] | None:
    """The shadow policy and how often it disagreed, when the server runs one."""
    reloader = getattr(request.app.state, "policy_reloader", None)
    return reloader.describe_shadow() if reloader is not None else None


# -- keys --------------------------------------------------------------------------
async def _keys_page(request: Request, *, created: Mapping[str, Any] | None = None, status: int = 200) -> Response:
    infos = await run_in_threadpool(gov(request).list_keys)
    infos.sort(key=lambda k: (k.revoked_at is not None, -k.created_at))
    return render(
        request,
        "keys.html",
        {"keys": infos, "created": created, "roles": [r.value for r in Role]},
        status=status,
    )


@router.get("/admin/keys")
async def keys_page(request: Request) -> Response:
    await page_user(request, admin=True)
    return await _keys_page(request)


def _groups(raw: object) -> list[str]:
    if not isinstance(raw, str):
        return []
    return [g.strip() for g in raw.replace("\n", ",").split(",") if g.strip()][:50]


@router.post("/admin/keys")
async def create_key(request: Request) -> Response:
    user = await page_user(request, admin=True)
    form = await read_form(request)
    role = form.get("role")
    name = form.get("name")
    agent_id = form.get("agent_id")
    name_s = name.strip()[:200] if isinstance(name, str) else ""
    agent_s = agent_id.strip() if isinstance(agent_id, str) and agent_id.strip() else None
    try:
        info, secret = await run_in_threadpool(
            lambda: gov(request).create_key(
                role=str(role), name=name_s, agent_id=agent_s, groups=_groups(form.get("groups")), actor=user
            )
        )
    except FarameshError as exc:
        session_of(request).set_flash("error", exc.message)
        return redirect("/admin/keys")
    # Rendered straight into this response (never stored, never redirected): shown once.
    return await _keys_page(request, created={"info": info, "secret": secret}, status=201)


@router.post("/admin/keys/{key_id}/revoke")
async def revoke_key(key_id: str, request: Request) -> Response:
    user = await page_user(request, admin=True)
    await read_form(request)
    session = session_of(request)
    if key_id == user.key_id:
        session.set_flash("error", "You cannot revoke the key you are logged in with. Log in with another admin key.")
        return redirect("/admin/keys")
    try:
        info = await run_in_threadpool(lambda: gov(request).revoke_key(key_id[:32], actor=user))
    except FarameshError as exc:
        session.set_flash("error", exc.message)
        return redirect("/admin/keys")
    session.set_flash("ok", f"Key {info.id} ({info.name or info.role.value}) is revoked; it no longer works.")
    return redirect("/admin/keys")


# -- webhooks ----------------------------------------------------------------------
RECENT_DELIVERIES = 20


async def _configured_webhooks(request: Request) -> list[dict[str, Any]] | None:
    """Every webhook the running sender knows (file and stored), when the server has one."""
    sender = getattr(request.app.state, "webhooks", None)
    hooks = getattr(sender, "hooks", None)
    if not callable(hooks):
        return None
    refresh = getattr(sender, "invalidate", None)
    if callable(refresh):
        refresh()
    return [h.to_dict() for h in await hooks()]


def _stored_webhooks(g: Governor) -> list[dict[str, Any]]:
    return [row_to_webhook(row).to_dict() for row in stored_webhooks.list_webhooks(g.store)]


def _webhook_overview(g: Governor, hooks: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Webhooks with their latest delivery, and the most recent deliveries overall."""
    listed = hooks if hooks is not None else _stored_webhooks(g)
    seen = stored_webhooks.overview(g.store, [hook["id"] for hook in listed], RECENT_DELIVERIES)
    for hook in listed:
        hook["last"] = seen.latest.get(hook["id"])
    return {"webhooks": listed, "recent": seen.recent, "waiting": seen.waiting}


@router.get("/admin/webhooks")
async def webhooks_page(request: Request) -> Response:
    await page_user(request, admin=True)
    hooks = await _configured_webhooks(request)
    overview = await run_in_threadpool(_webhook_overview, gov(request), hooks)
    return render(request, "webhooks.html", overview)

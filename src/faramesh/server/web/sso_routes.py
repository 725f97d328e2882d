"""`GET /login/oidc` starts a single sign-on, `GET /login/oidc/callback` ends it.

The start sends the browser to the provider's authorization endpoint with a fresh
`state`, `nonce` and PKCE challenge, kept (with where to go next) in a signed cookie that
lives ten minutes. The callback accepts only the `state` of the sign-in this browser
started, exchanges the code with the PKCE verifier, checks the ID token, and opens a
session for the person if their groups (and email) give them a role; otherwise it shows
why not. Whatever happens, the sign-in cookie is spent.
"""

from __future__ import annotations

import hmac
import logging
import secrets

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from faramesh.errors import NotFound
from faramesh.server.web.guard import WebRoute, codec, safe_next, session_of
from faramesh.server.web.oidc import ProviderRefused, ProviderUnavailable
from faramesh.server.web.render import render
from faramesh.server.web.session import person_logged_in
from faramesh.server.web.sso import claims_of, redirect_uri, runtime
from faramesh.service import Governor

log = logging.getLogger("faramesh.server.web")

router = APIRouter(route_class=WebRoute, include_in_schema=False)

MAX_PARAM = 4096


def _refused(request: Request, status: int, title: str, message: str) -> Response:
    return render(request, "error.html", {"title": title, "message": message}, status=status)


@router.get("/login/oidc")
async def start(request: Request) -> Response:
    rt = runtime(request)
    if rt.client is None or rt.config is None:
        raise NotFound("Single sign-on is not configured on this server.")
    nxt = safe_next(request.query_params.get("next"))
    try:
        login = await rt.client.login_request(redirect_uri(request, rt.config))
    except ProviderUnavailable as exc:
        log.warning("single sign-on: %s", exc)
        return _refused(request, 503, "Identity provider unavailable", f"{exc}. Try again in a moment.")
    except ProviderRefused as exc:
        log.error("single sign-on is misconfigured: %s", exc)
        return _refused(request, 502, "Identity provider misconfigured", f"Single sign-on cannot start: {exc}.")
    response = RedirectResponse(login.url, status_code=303)
    flow = {"state": login.state, "nonce": login.nonce, "verifier": login.verifier, "next": nxt}
    codec(request).save_flow(request, response, flow)
    return response


@router.get("/login/oidc/callback")
async def callback(request: Request) -> Response:
    response = await _finish(request)
    codec(request).clear_flow(response)  # a sign-in cookie is good for one answer only
    return response


async def _finish(request: Request) -> Response:
    rt = runtime(request)
    if rt.client is None or rt.config is None:
        raise NotFound("Single sign-on is not configured on this server.")
    flow = codec(request).load_flow(request)
    qp = request.query_params
    if flow is None:
        return _refused(
            request,
            400,
            "No sign-in in progress",
            "This browser has no sign-in in progress (or it took more than ten minutes). Start again from the login page.",
        )
    state = qp.get("state")
    if not isinstance(state, str) or not hmac.compare_digest(state.encode(), flow["state"].encode()):
        # A response to a sign-in this browser did not start (a forged or replayed callback).
        return _refused(
            request,
            400,
            "Sign-in refused",
            "The answer from the identity provider does not belong to the sign-in this browser started. "
            "Start again from the login page.",
        )
    if qp.get("error"):
        error = (qp.get("error") or "")[:100]
        description = (qp.get("error_description") or "")[:300]
        return _refused(
            request,
            403,
            "Sign-in refused",
            f"Your identity provider refused the sign-in: {error}" + (f" ({description})" if description else "") + ".",
        )
    code = qp.get("code")
    if not code or len(code) > MAX_PARAM:
        return _refused(request, 400, "Sign-in refused", "The identity provider's answer has no authorization code.")
    config, client = rt.config, rt.client
    try:
        verified = await client.finish_login(
            code=code, redirect_uri=redirect_uri(request, config), verifier=flow["verifier"], nonce=flow["nonce"]
        )
        claims = claims_of(config, verified)
    except ProviderUnavailable as exc:
        log.warning("single sign-on: %s", exc)
        return _refused(request, 503, "Identity provider unavailable", f"{exc}. Try again in a moment.")
    except ProviderRefused as exc:
        log.warning("single sign-on refused: %s", exc)
        return _refused(request, 403, "Sign-in refused", f"The sign-in could not be accepted: {exc}.")
    g: Governor = request.app.state.governor
    session_id = secrets.token_urlsafe(32)
    sealed = codec(request).seal(verified.tokens.to_json())
    identity, why = await run_in_threadpool(
        lambda: g.sign_in_person(config, claims, session_id=session_id, tokens=sealed)
    )
    if identity is None:
        who = claims.person.email or claims.person.subject
        return _refused(
            request,
            403,
            "No access to Faramesh",
            f"You are signed in at your identity provider as {who}, but you cannot use Faramesh: {why}. "
            "Ask your administrator to add you to an approver group.",
        )
    previous = session_of(request)
    if previous.kid is not None or previous.pid is not None:
        codec(request).end(previous)
    request.state.web_session = person_logged_in(session_id, config.session_lifetime)
    # A page, not a redirect: the browser arrived by a cross-site navigation, on which it
    # would not send the new (SameSite=Strict) session cookie; this page's own navigation does.
    context = {"next": safe_next(flow.get("next")), "person_name": identity.name or identity.label}
    return render(request, "signed_in.html", context)

"""What stands in front of every dashboard route: the session, login, CSRF and error pages.

Dashboard routes use `WebRoute`, which loads the session before the handler, turns
errors into HTML pages (never the API's JSON), saves the session cookie when it
changed and adds the page's Content-Security-Policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from faramesh import service_reads
from faramesh.errors import FarameshError, Forbidden
from faramesh.model import Identity
from faramesh.server.web import sso
from faramesh.server.web.render import PAGE_HEADERS, render
from faramesh.server.web.session import Session, SessionCodec
from faramesh.validation import refuse_nul

log = logging.getLogger("faramesh.server.web")

MAX_FORM_FIELDS = 20


class LoginRequired(Exception):
    """No valid session: pages redirect to the login form, other requests get 401."""


class CsrfRejected(Exception):
    """A form arrived without this session's CSRF token."""


def codec(request: Request) -> SessionCodec:
    sessions: SessionCodec = request.app.state.web_sessions
    return sessions


def session_of(request: Request) -> Session:
    session: Session = request.state.web_session
    return session


def _session_ended(request: Request, session: Session, message: str) -> LoginRequired:
    """End `session` here, and say why on the login page."""
    codec(request).end(session)
    fresh = Session(expires=session.expires, dirty=True)
    fresh.set_flash("error", message)
    request.state.web_session = fresh
    return LoginRequired()


async def require_user(request: Request, *, admin: bool = False) -> Identity:
    """The signed-in approver or admin: the key is re-checked on every request; a person's
    session too, and their groups with the identity provider when the re-check is due."""
    session = session_of(request)
    identity: Identity | None
    if session.pid is not None:
        identity, why = await sso.person_user(request, session)
        if identity is None:
            raise _session_ended(request, session, f"Your session ended: {why}.")
    elif session.kid is not None:
        if not sso.runtime(request).key_login:
            raise _session_ended(
                request, session, "Key login to the dashboard is turned off: sign in with single sign-on."
            )
        kid = session.kid
        identity = await run_in_threadpool(service_reads.dashboard_identity, request.app.state.governor, kid)
        if identity is None:
            raise _session_ended(request, session, "Your session ended: the key was revoked or can no longer approve.")
    else:
        raise LoginRequired()
    request.state.web_user = identity
    if admin and not identity.is_admin:
        raise Forbidden("This page is for admin keys only.")
    return identity


async def read_form(request: Request, *, max_fields: int = MAX_FORM_FIELDS) -> FormData:
    """The submitted form, once its CSRF token matched this session's and no field
    holds a NUL character (the rule for every request: 422 naming the field)."""
    form = await request.form(max_files=0, max_fields=max_fields)
    if not session_of(request).csrf_ok(form.get("csrf_token")):
        raise CsrfRejected()
    for name, value in form.multi_items():
        refuse_nul(name, "form")
        refuse_nul(value, name)
    return form


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    return render(request, "error.html", {"title": title, "message": message}, status=status)


class WebRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def web_handler(request: Request) -> Response:
            sessions = codec(request)
            request.state.web_session = sessions.load(request)
            request.state.web_user = None
            try:
                response = await handler(request)
            except LoginRequired:
                response = _login_redirect(request)
            except CsrfRejected:
                response = _error_page(
                    request,
                    403,
                    "Form expired",
                    "The form was missing its security token or it has expired. Go back, reload the page and try again.",
                )
            except FarameshError as exc:
                response = _error_page(request, exc.status_code, "Cannot do that", exc.message)
            except RequestValidationError:
                response = _error_page(request, 422, "Bad request", "The request had a missing or malformed value.")
            except StarletteHTTPException as exc:  # e.g. a malformed form body
                detail = exc.detail if isinstance(exc.detail, str) else "The request could not be read."
                response = _error_page(request, exc.status_code, "Bad request", detail)
            except Exception:
                log.exception("dashboard error on %s %s", request.method, request.url.path)
                response = _error_page(
                    request,
                    500,
                    "Something went wrong",
                    "The request failed. Reload the page to see the current state.",
                )
            session = session_of(request)
            if session.dirty and not sessions.is_ended(session.sid):
                sessions.save(request, response, session)
            for name, value in PAGE_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return web_handler


def _login_redirect(request: Request) -> Response:
    if request.method == "GET" and request.url.path.startswith("/ui/"):
        return Response("login required\n", status_code=401, media_type="text/plain")
    if request.method != "GET":
        return _error_page(request, 403, "Not logged in", "Your session has ended. Log in again and retry.")
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    nxt = "" if target == "/" else "?next=" + quote(target, safe="")
    return redirect("/login" + nxt)


def safe_next(value: object) -> str:
    """Only same-site paths may be a post-login destination (no open redirect)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 0x20 for c in value) or value.startswith(("/login", "/logout", "/ui/")):
        return "/"
    return value

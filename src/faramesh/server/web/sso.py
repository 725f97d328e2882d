"""Single sign-on for the dashboard: what the server holds for it, and the check of a
person's session on every request (with its re-check at the provider when due).

A person's session is re-checked with the identity provider at most every
`FARAMESH_OIDC_RECHECK` (default 5 minutes): one request (on any replica) takes the due
re-check (compare-and-set), refreshes the tokens and reads the groups again; the others go
on with the groups as last checked. A refused refresh, a different subject, or groups that
no longer map to a role end the session (and, for the groups, every session of that
person). An unreachable provider refuses the request without ending the session, and the
next request tries again.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from faramesh.errors import Unavailable
from faramesh.model import Identity
from faramesh.server.web.oidc import OidcClient, ProviderRefused, ProviderUnavailable, Tokens, Verified
from faramesh.server.web.session import Session, SessionCodec
from faramesh.service import Governor
from faramesh.service.people import Claims
from faramesh.sso import SsoConfig, person_from_claims

CALLBACK_PATH = "/login/oidc/callback"


@dataclass(frozen=True)
class SsoRuntime:
    config: SsoConfig | None
    client: OidcClient | None
    key_login: bool  # approver and admin keys may log in to the dashboard

    @property
    def enabled(self) -> bool:
        return self.client is not None


def runtime(request: Request) -> SsoRuntime:
    rt: SsoRuntime = request.app.state.sso
    return rt


def base_url(request: Request, config: SsoConfig | None) -> str:
    """The dashboard's address as the browser reaches it: FARAMESH_PUBLIC_URL when set
    (behind a proxy), else the request's own."""
    if config is not None and config.public_url:
        return config.public_url
    return str(request.base_url).rstrip("/")


def redirect_uri(request: Request, config: SsoConfig) -> str:
    return base_url(request, config) + CALLBACK_PATH


def claims_of(config: SsoConfig, verified: Verified) -> Claims:
    """The person and groups the provider vouched for (ProviderRefused without a subject)."""
    try:
        person, email_verified = person_from_claims(config.issuer, verified.claims)
    except ValueError as exc:
        raise ProviderRefused(str(exc)) from None
    return Claims(person=person, email_verified=email_verified, groups=config.groups_in(verified.claims) or ())


class ProviderDown(Unavailable):
    """The provider could not be asked to re-check a session: this request is refused."""


def _gov(request: Request) -> Governor:
    g: Governor = request.app.state.governor
    return g


def _codec(request: Request) -> SessionCodec:
    codec: SessionCodec = request.app.state.web_sessions
    return codec


async def person_user(request: Request, session: Session) -> tuple[Identity | None, str]:
    """The person behind a single sign-on session, re-checked with the provider when due;
    (None, why) when the session has ended."""
    rt, g = runtime(request), _gov(request)
    assert session.pid is not None
    if rt.config is None or rt.client is None:
        return None, "single sign-on is no longer configured on this server"
    state = await run_in_threadpool(g.person_session, session.pid)
    if state is None:
        return None, "you signed out, the session expired, or your access was removed"
    if g.clock() - state.checked_at < rt.config.recheck:
        return state.identity, ""
    if not await run_in_threadpool(g.claim_person_recheck, state):
        return state.identity, ""  # another request is re-checking it now
    config, codec = rt.config, _codec(request)
    plain = codec.unseal(state.tokens) if state.tokens else None
    if plain is None:
        why = "the session's tokens cannot be read (the server's secret key changed); sign in again"
        return await run_in_threadpool(g.recheck_person, config, state, None, tokens=None, why=why)
    assert state.identity.person is not None
    try:
        verified = await rt.client.recheck(Tokens.from_json(plain), state.identity.person.subject)
        claims = claims_of(config, verified)
    except ProviderUnavailable as exc:
        await run_in_threadpool(g.postpone_person_recheck, state)
        raise ProviderDown(
            f"Your access could not be re-checked with your identity provider ({exc}). Try again in a moment."
        ) from None
    except ProviderRefused as exc:
        why = f"your identity provider no longer confirms this session ({exc})"
        return await run_in_threadpool(g.recheck_person, config, state, None, tokens=None, why=why)
    sealed = codec.seal(verified.tokens.to_json())
    return await run_in_threadpool(g.recheck_person, config, state, claims, tokens=sealed)

"""Single sign-on: its settings, and the rules that turn a person's claims into a role.

Pure (no I/O): the OpenID Connect exchange itself is in `faramesh.server.web.oidc`, the
people and their sessions in `faramesh.service.people`. A person's role comes from the
groups their identity provider lists at every sign-in and every re-check; a person in
no mapped group gets no role, and so no access.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from faramesh.config import Settings
from faramesh.model import Person, Role

MAX_CLAIM = 500  # longest subject, email or name kept from a token
MAX_GROUPS = 500


class SsoConfigError(ValueError):
    """A single sign-on setting is missing or wrong; `setting` names its variable."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_allowed(url: str, *, loopback_http: bool) -> bool:
    """https, or http on a loopback host when `loopback_http` (a provider for local testing)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.hostname or parts.fragment:
        return False
    if parts.scheme == "https":
        return True
    return loopback_http and parts.scheme == "http" and is_loopback(parts.hostname)


def _split(value: str | None) -> frozenset[str]:
    return frozenset(part.strip() for part in (value or "").split(",") if part.strip())


@dataclass(frozen=True)
class SsoConfig:
    issuer: str
    client_id: str
    client_secret: str | None
    scopes: tuple[str, ...]
    groups_claim: str
    approver_groups: frozenset[str]
    admin_groups: frozenset[str]
    email_domains: frozenset[str]
    recheck: float  # seconds between re-checks of a signed-in person's groups
    session_lifetime: float
    public_url: str | None  # the redirect URI is built on it when set

    @property
    def loopback_http(self) -> bool:
        """An http issuer is accepted on loopback only; then its endpoints may be http too."""
        return urlsplit(self.issuer).scheme == "http"

    @classmethod
    def from_settings(cls, settings: Settings) -> SsoConfig | None:
        """The single sign-on settings, or None when no issuer is set; SsoConfigError when
        they are incomplete or unsafe (the server refuses to start, naming the setting)."""
        issuer = (settings.oidc_issuer or "").strip()
        if not issuer:
            return None
        if not url_allowed(issuer, loopback_http=True) or urlsplit(issuer).query:
            raise SsoConfigError(
                "FARAMESH_OIDC_ISSUER",
                f"{issuer!r} is not an https URL (http is accepted only on loopback, for local testing)",
            )
        client_id = (settings.oidc_client_id or "").strip()
        if not client_id:
            raise SsoConfigError("FARAMESH_OIDC_CLIENT_ID", "required with FARAMESH_OIDC_ISSUER")
        approvers, admins = _split(settings.oidc_approver_groups), _split(settings.oidc_admin_groups)
        if not approvers and not admins:
            raise SsoConfigError(
                "FARAMESH_OIDC_APPROVER_GROUPS",
                "name at least one approver or admin group (FARAMESH_OIDC_ADMIN_GROUPS), or nobody can sign in",
            )
        scopes = tuple(dict.fromkeys(settings.oidc_scopes.split()))
        if "openid" not in scopes:
            raise SsoConfigError("FARAMESH_OIDC_SCOPES", "must include openid")
        claim = settings.oidc_groups_claim.strip()
        if not claim:
            raise SsoConfigError("FARAMESH_OIDC_GROUPS_CLAIM", "must name a claim")
        public = settings.public_url
        if public and urlsplit(public).scheme not in ("http", "https"):
            raise SsoConfigError("FARAMESH_PUBLIC_URL", "must be an http(s) URL")
        return cls(
            issuer=issuer,
            client_id=client_id,
            client_secret=settings.oidc_client_secret or None,
            scopes=scopes,
            groups_claim=claim,
            approver_groups=approvers,
            admin_groups=admins,
            email_domains=frozenset(d.lower().lstrip("@") for d in _split(settings.oidc_email_domains)),
            recheck=settings.oidc_recheck,
            session_lifetime=settings.session_lifetime,
            public_url=public.rstrip("/") if public else None,
        )

    # -- what the claims say -----------------------------------------------------------
    def groups_in(self, claims: Mapping[str, Any]) -> tuple[str, ...] | None:
        """The groups listed in `claims`, or None when the claim is absent."""
        if self.groups_claim not in claims:
            return None
        value = claims[self.groups_claim]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            return ()
        return tuple(sorted({g.strip() for g in value[:MAX_GROUPS] if isinstance(g, str) and g.strip()}))

    def role_for(self, groups: Iterable[str]) -> Role | None:
        """Admin for a member of an admin group, else approver for a member of an approver
        group, else None: no access."""
        held = set(groups)
        if held & self.admin_groups:
            return Role.ADMIN
        if held & self.approver_groups:
            return Role.APPROVER
        return None

    def email_allowed(self, person: Person, verified: bool) -> bool:
        """With allowed domains set, only a verified email in one of them may sign in."""
        if not self.email_domains:
            return True
        if not verified or not person.email or "@" not in person.email:
            return False
        return person.email.rsplit("@", 1)[1].lower() in self.email_domains


def _text(value: Any) -> str | None:
    return value.strip()[:MAX_CLAIM] if isinstance(value, str) and value.strip() else None


def person_from_claims(issuer: str, claims: Mapping[str, Any]) -> tuple[Person, bool]:
    """The person an ID token (or userinfo) names, and whether their email is verified.

    Only `email_verified: true` makes an email verified: a provider that does not say so
    (Entra ID) has its emails treated as unverified, so they are never used to match people.
    """
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > MAX_CLAIM:
        raise ValueError("the token has no usable sub claim")
    email = _text(claims.get("email"))
    email = email.lower() if email else None
    name = _text(claims.get("name")) or _text(claims.get("preferred_username")) or email or ""
    verified = claims.get("email_verified") is True and email is not None
    return Person(issuer=issuer, subject=subject, email=email, name=name), verified

"""Dashboard sessions: a signed, expiring cookie that holds a key id or a person's session
id, and a CSRF token.

The cookie is signed with itsdangerous (HMAC-SHA1 over a timestamped payload) using
Settings.secret_key, or a random secret made at start-up, in which case every session
ends when the server restarts. Nothing secret lives in the cookie: the key id is
re-checked against the database on every request, so a revoked key or a key whose role
changed loses its session at once; a person's session is a row in the database (see
faramesh.service.people), ended by logging out on any replica.

A single sign-on in progress keeps its `state`, `nonce` and PKCE verifier in a second,
short-lived cookie (`faramesh_sso`): SameSite=Lax, because the provider sends the browser
back with a cross-site navigation that a Strict cookie would not come with. Tokens kept
for re-checks are sealed (JWE, A256GCM) with a key derived from the same secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from starlette.requests import Request
from starlette.responses import Response

from faramesh.model import Identity

COOKIE_NAME = "faramesh_session"
SESSION_MAX_AGE = 8 * 3600  # a working day; then log in again (FARAMESH_SESSION_LIFETIME)
ANONYMOUS_MAX_AGE = 3600  # a login form older than this asks to be reloaded
_SALT = "faramesh.dashboard.session"
FLOW_COOKIE = "faramesh_sso"
FLOW_PATH = "/login/oidc"
FLOW_MAX_AGE = 600  # a sign-in at the provider must finish within ten minutes
_FLOW_SALT = "faramesh.dashboard.sso-flow"
_SEAL_CONTEXT = b"faramesh.dashboard.sealed-tokens\0"


@dataclass
class Session:
    """What the cookie carries. `kid` is None until someone logs in."""

    sid: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    kid: str | None = None
    pid: str | None = None  # a person's session (single sign-on): the random id of its stored row
    expires: float = 0.0
    flash: dict[str, str] | None = None
    dirty: bool = False

    def to_payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {"sid": self.sid, "csrf": self.csrf, "exp": self.expires}
        if self.kid is not None:
            data["kid"] = self.kid
        if self.pid is not None:
            data["pid"] = self.pid
        if self.flash is not None:
            data["flash"] = self.flash
        return data

    def set_flash(self, kind: str, text: str) -> None:
        self.flash = {"kind": kind, "text": text[:500]}
        self.dirty = True

    def pop_flash(self) -> dict[str, str] | None:
        flash, self.flash = self.flash, None
        if flash is not None:
            self.dirty = True
        return flash

    def csrf_ok(self, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.csrf.encode())


class SessionCodec:
    """Signs and reads session cookies; remembers sessions ended by logging out."""

    def __init__(self, secret: str | None, lifetime: float = SESSION_MAX_AGE) -> None:
        self.ephemeral = not secret
        key = secret or secrets.token_urlsafe(48)
        self.lifetime = lifetime
        self._serializer = URLSafeTimedSerializer(key, salt=_SALT)
        self._flow = URLSafeTimedSerializer(key, salt=_FLOW_SALT)
        self._seal_key = OctKey.import_key(hashlib.sha256(_SEAL_CONTEXT + key.encode()).digest())
        # Logged-out session ids until their cookie would have expired anyway, so a
        # copied cookie cannot be replayed after logout (per server process).
        self._ended: dict[str, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, secret_key: str | None, lifetime: float = SESSION_MAX_AGE) -> SessionCodec:
        # `faramesh serve` builds Settings from its options; the variable still counts.
        return cls(secret_key or os.environ.get("FARAMESH_SECRET_KEY") or None, lifetime)

    def load(self, request: Request) -> Session:
        raw = request.cookies.get(COOKIE_NAME)
        if raw:
            try:
                data = self._serializer.loads(raw, max_age=int(self.lifetime))
            except BadSignature:  # includes SignatureExpired
                data = None
            session = self._from_payload(data)
            if session is not None:
                return session
        return Session(expires=time.time() + ANONYMOUS_MAX_AGE, dirty=True)

    def _from_payload(self, data: Any) -> Session | None:
        if not isinstance(data, dict):
            return None
        sid, csrf, exp = data.get("sid"), data.get("csrf"), data.get("exp")
        kid, pid = data.get("kid"), data.get("pid")
        if not isinstance(sid, str) or not isinstance(csrf, str) or not isinstance(exp, (int, float)):
            return None
        if exp <= time.time() or self.is_ended(sid):
            return None
        flash = data.get("flash")
        if not (isinstance(flash, dict) and all(isinstance(v, str) for v in flash.values())):
            flash = None
        return Session(
            sid=sid,
            csrf=csrf,
            kid=kid if isinstance(kid, str) else None,
            pid=pid if isinstance(pid, str) else None,
            expires=float(exp),
            flash=flash,
        )

    def save(self, request: Request, response: Response, session: Session) -> None:
        max_age = max(1, int(session.expires - time.time()))
        response.set_cookie(
            COOKIE_NAME,
            self._serializer.dumps(session.to_payload()),
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def end(self, session: Session) -> None:
        now = time.time()
        with self._lock:
            self._ended = {sid: exp for sid, exp in self._ended.items() if exp > now}
            self._ended[session.sid] = session.expires

    def is_ended(self, sid: str) -> bool:
        with self._lock:
            return sid in self._ended

    # -- a single sign-on in progress ----------------------------------------------------
    def save_flow(self, request: Request, response: Response, flow: dict[str, str]) -> None:
        response.set_cookie(
            FLOW_COOKIE,
            self._flow.dumps(flow),
            max_age=FLOW_MAX_AGE,
            path=FLOW_PATH,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )

    def load_flow(self, request: Request) -> dict[str, str] | None:
        raw = request.cookies.get(FLOW_COOKIE)
        if not raw:
            return None
        try:
            data = self._flow.loads(raw, max_age=FLOW_MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return None
        return data

    def clear_flow(self, response: Response) -> None:
        response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH, httponly=True, samesite="lax")

    # -- tokens kept in the database -------------------------------------------------------
    def seal(self, text: str) -> str:
        return jwe.encrypt_compact({"alg": "dir", "enc": "A256GCM"}, text.encode(), self._seal_key)

    def unseal(self, sealed: str) -> str | None:
        """The text, or None when it was sealed with another secret (or tampered with)."""
        try:
            plain = jwe.decrypt_compact(sealed, self._seal_key).plaintext
            return plain.decode() if plain is not None else None
        except (JoseError, ValueError, UnicodeDecodeError):
            return None


def logged_in(identity: Identity, lifetime: float = SESSION_MAX_AGE) -> Session:
    """A fresh session for someone who just logged in: new id and CSRF token (no fixation)."""
    return Session(kid=identity.key_id, expires=time.time() + lifetime, dirty=True)


def person_logged_in(session_id: str, lifetime: float) -> Session:
    """A fresh session for a person who just signed in with single sign-on."""
    return Session(pid=session_id, expires=time.time() + lifetime, dirty=True)

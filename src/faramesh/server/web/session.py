"""Dashboard sessions: a signed, expiring cookie that holds only a key id and a CSRF token.

The cookie is signed with itsdangerous (HMAC-SHA1 over a timestamped payload) using
Settings.secret_key, or a random secret made at start-up, in which case every session
ends when the server restarts. Nothing secret lives in the cookie: the key id is
re-checked against the database on every request, so a revoked key or a key whose role
changed loses its session at once.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from faramesh.model import Identity

COOKIE_NAME = "faramesh_session"
SESSION_MAX_AGE = 8 * 3600  # a working day; then log in again
ANONYMOUS_MAX_AGE = 3600  # a login form older than this asks to be reloaded
_SALT = "faramesh.dashboard.session"


@dataclass
class Session:
    """What the cookie carries. `kid` is None until someone logs in."""

    sid: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    kid: str | None = None
    expires: float = 0.0
    flash: dict[str, str] | None = None
    dirty: bool = False

    def to_payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {"sid": self.sid, "csrf": self.csrf, "exp": self.expires}
        if self.kid is not None:
            data["kid"] = self.kid
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

    def __init__(self, secret: str | None) -> None:
        self.ephemeral = not secret
        self._serializer = URLSafeTimedSerializer(secret or secrets.token_urlsafe(48), salt=_SALT)
        # Logged-out session ids until their cookie would have expired anyway, so a
        # copied cookie cannot be replayed after logout (per server process).
        self._ended: dict[str, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, secret_key: str | None) -> SessionCodec:
        # `faramesh serve` builds Settings from its options; the variable still counts.
        return cls(secret_key or os.environ.get("FARAMESH_SECRET_KEY") or None)

    def load(self, request: Request) -> Session:
        raw = request.cookies.get(COOKIE_NAME)
        if raw:
            try:
                data = self._serializer.loads(raw, max_age=SESSION_MAX_AGE)
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
        kid = data.get("kid")
        if not isinstance(sid, str) or not isinstance(csrf, str) or not isinstance(exp, (int, float)):
            return None
        if exp <= time.time() or self.is_ended(sid):
            return None
        flash = data.get("flash")
        if not (isinstance(flash, dict) and all(isinstance(v, str) for v in flash.values())):
            flash = None
        return Session(sid=sid, csrf=csrf, kid=kid if isinstance(kid, str) else None, expires=float(exp), flash=flash)

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


def logged_in(identity: Identity) -> Session:
    """A fresh session for someone who just logged in: new id and CSRF token (no fixation)."""
    return Session(kid=identity.key_id, expires=time.time() + SESSION_MAX_AGE, dirty=True)

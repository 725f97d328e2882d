"""A small OpenID Connect provider for tests: a real HTTP server on loopback in the test
process (discovery, authorize with a login form, token, userinfo, JWKS, end-session),
signing ID tokens with RS256 keys it can rotate.

It follows the parts of the spec a relying party depends on: codes are single use and
bound to the client, the redirect URI and the PKCE S256 challenge; refresh tokens rotate
and stop working for a disabled account. Tests change its users (groups, disabled) and
can make the next ID token wrong in one way (`tamper_next`) to see the relying party
refuse it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

CLIENT_ID = "faramesh-dashboard"
CLIENT_SECRET = "test-client-secret"


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class User:
    sub: str
    email: str
    name: str
    groups: list[str]
    email_verified: bool = True
    disabled: bool = False

    def claims(self) -> dict[str, Any]:
        return {
            "sub": self.sub,
            "email": self.email,
            "email_verified": self.email_verified,
            "name": self.name,
            "groups": list(self.groups),
        }


@dataclass
class Grant:
    username: str
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    used: bool = False


@dataclass
class Provider:
    host: str = "127.0.0.1"  # where it listens
    public_host: str | None = None  # how URLs name it (e.g. "localhost", another site than the app)
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    users: dict[str, User] = field(default_factory=dict)
    groups_in_id_token: bool = True  # False: groups only from userinfo
    issue_refresh_tokens: bool = True
    id_token_lifetime: int = 300
    tamper_next: dict[str, Any] = field(default_factory=dict)  # changes to the next ID token only
    fail_token_endpoint: int | None = None  # answer every token request with this status (an outage)
    log: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request
    logouts: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys: list[RSAKey] = [self._new_key()]
        self.unpublished = RSAKey.generate_key(2048, parameters={"kid": "not-published"})
        self.grants: dict[str, Grant] = {}
        self.refresh: dict[str, str] = {}  # refresh token -> username
        self.access: dict[str, tuple[str, float]] = {}  # access token -> (username, expires)
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # -- running ---------------------------------------------------------------------
    def start(self) -> Provider:
        provider = self

        class Handler(_Handler):
            owner = provider

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        threading.Thread(target=self.server.serve_forever, name="test-oidc-provider", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    @property
    def issuer(self) -> str:
        return f"http://{self.public_host or self.host}:{self.port}"

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """`Settings` fields that point a server at this provider."""
        values: dict[str, Any] = {
            "oidc_issuer": self.issuer,
            "oidc_client_id": self.client_id,
            "oidc_client_secret": self.client_secret,
            "oidc_approver_groups": "faramesh-approvers",
            "oidc_admin_groups": "faramesh-admins",
        }
        return values | overrides

    def env(self, **overrides: str) -> dict[str, str]:
        """The same as environment variables, for a server process."""
        return {f"FARAMESH_{k.upper()}": str(v) for k, v in self.settings(**overrides).items()}

    # -- keys --------------------------------------------------------------------------
    def _new_key(self) -> RSAKey:
        return RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(6), "use": "sig", "alg": "RS256"})

    def rotate(self) -> None:
        """A new signing key; the old one is no longer published."""
        with self.lock:
            self.keys = [self._new_key()]

    def jwks(self) -> dict[str, Any]:
        return KeySet(list(self.keys)).as_dict(private=False)

    # -- tokens ------------------------------------------------------------------------
    def id_token(self, user: User, nonce: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + self.id_token_lifetime,
            "auth_time": now,
        } | user.claims()
        if not self.groups_in_id_token:
            claims.pop("groups")
        if nonce is not None:
            claims["nonce"] = nonce
        with self.lock:
            tamper, self.tamper_next = self.tamper_next, {}
        key = self.keys[-1]
        if tamper.pop("unpublished_key", False):
            key = self.unpublished
        claims |= tamper
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)

    def issue(self, username: str, nonce: str | None) -> dict[str, Any]:
        user = self.users[username]
        access = secrets.token_urlsafe(24)
        answer: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": self.id_token(user, nonce),
        }
        with self.lock:
            self.access[access] = (username, time.time() + 300)
            if self.issue_refresh_tokens:
                refresh = secrets.token_urlsafe(24)
                self.refresh[refresh] = username
                answer["refresh_token"] = refresh
        return answer

    # -- what a browser does, for HTTP-level tests --------------------------------------
    def authorize_url_answer(self, authorize_url: str, username: str) -> str:
        """Sign in as `username` at the provider; the URL it sends the browser back to."""
        import httpx

        query = urlsplit(authorize_url).query
        r = httpx.post(self.issuer + "/authorize", data={"username": username, "query": query}, timeout=10)
        assert r.status_code == 302, r.text
        return str(r.headers["location"])


class _Handler(BaseHTTPRequestHandler):
    owner: Provider

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    # -- plumbing ------------------------------------------------------------------------
    def _send(self, status: int, body: Any, content_type: str = "application/json", **headers: str) -> None:
        data = (
            body
            if isinstance(body, bytes)
            else orjson.dumps(body)
            if content_type == "application/json"
            else str(body).encode()
        )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(data)

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    def _query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}

    def _error(self, status: int, error: str, description: str = "") -> None:
        self._send(status, {"error": error, "error_description": description})

    # -- routes ----------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.owner.log.append(("GET", path))
        if path == "/.well-known/openid-configuration":
            self._discovery()
        elif path == "/jwks":
            self._send(200, self.owner.jwks())
        elif path == "/authorize":
            self._login_form(self._query())
        elif path == "/userinfo":
            self._userinfo()
        elif path == "/logout":
            self._logout(self._query())
        else:
            self._error(404, "not_found")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        self.owner.log.append(("POST", path))
        if path == "/authorize":
            self._authorize(self._form())
        elif path == "/token":
            self._token(self._form())
        else:
            self._error(404, "not_found")

    def _discovery(self) -> None:
        base = self.owner.issuer
        self._send(
            200,
            {
                "issuer": base,
                "authorization_endpoint": base + "/authorize",
                "token_endpoint": base + "/token",
                "userinfo_endpoint": base + "/userinfo",
                "jwks_uri": base + "/jwks",
                "end_session_endpoint": base + "/logout",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
            },
        )

    def _check_authorize(self, q: dict[str, str]) -> str | None:
        if q.get("response_type") != "code":
            return "unsupported_response_type"
        if q.get("client_id") != self.owner.client_id:
            return "unauthorized_client"
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return "invalid_request: PKCE S256 required"
        if not q.get("state") or not q.get("nonce") or not q.get("redirect_uri"):
            return "invalid_request: state, nonce and redirect_uri required"
        if "openid" not in (q.get("scope") or "").split():
            return "invalid_scope"
        return None

    def _login_form(self, q: dict[str, str]) -> None:
        problem = self._check_authorize(q)
        if problem:
            self._send(400, f"<p>{html.escape(problem)}</p>", "text/html")
            return
        options = "".join(f'<option value="{html.escape(u)}">{html.escape(u)}</option>' for u in self.owner.users)
        page = (
            "<!doctype html><html><head><title>Test identity provider</title></head><body>"
            "<h1>Test identity provider</h1>"
            f'<form method="post" action="/authorize"><input type="hidden" name="query" value="{html.escape(urlencode(q))}">'
            f'<label for="username">User</label><select id="username" name="username">{options}</select>'
            '<button type="submit">Sign in</button></form></body></html>'
        )
        self._send(200, page, "text/html")

    def _authorize(self, form: dict[str, str]) -> None:
        q = {k: v[0] for k, v in parse_qs(form.get("query", "")).items()}
        problem = self._check_authorize(q)
        user = self.owner.users.get(form.get("username", ""))
        if problem or user is None or user.disabled:
            self._send(400, f"<p>{html.escape(problem or 'unknown or disabled user')}</p>", "text/html")
            return
        code = secrets.token_urlsafe(24)
        with self.owner.lock:
            self.owner.grants[code] = Grant(
                username=form["username"],
                client_id=q["client_id"],
                redirect_uri=q["redirect_uri"],
                challenge=q["code_challenge"],
                nonce=q.get("nonce"),
            )
        target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
        self._send(302, b"", "text/plain", Location=target)

    def _client_ok(self, form: dict[str, str]) -> bool:
        header = self.headers.get("Authorization") or ""
        if header.startswith("Basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        return client_id == self.owner.client_id and secrets.compare_digest(secret, self.owner.client_secret)

    def _token(self, form: dict[str, str]) -> None:
        if self.owner.fail_token_endpoint is not None:
            self._send(self.owner.fail_token_endpoint, b"unavailable", "text/plain")
            return
        if not self._client_ok(form):
            self._error(401, "invalid_client")
            return
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            self._code_grant(form)
        elif grant_type == "refresh_token":
            self._refresh_grant(form)
        else:
            self._error(400, "unsupported_grant_type")

    def _code_grant(self, form: dict[str, str]) -> None:
        owner = self.owner
        with owner.lock:
            grant = owner.grants.get(form.get("code", ""))
            replay = grant is not None and grant.used
            if grant is not None:
                grant.used = True
        if grant is None or replay:
            self._error(400, "invalid_grant", "unknown or already used code")
            return
        if grant.redirect_uri != form.get("redirect_uri") or grant.client_id != owner.client_id:
            self._error(400, "invalid_grant", "redirect_uri does not match")
            return
        if s256(form.get("code_verifier", "")) != grant.challenge:
            self._error(400, "invalid_grant", "PKCE verification failed")
            return
        self._send(200, owner.issue(grant.username, grant.nonce))

    def _refresh_grant(self, form: dict[str, str]) -> None:
        owner = self.owner
        with owner.lock:
            username = owner.refresh.pop(form.get("refresh_token", ""), None)  # rotated: single use
        user = owner.users.get(username or "")
        if user is None or user.disabled:
            self._error(400, "invalid_grant", "refresh token is not valid")
            return
        self._send(200, owner.issue(username or "", None))

    def _userinfo(self) -> None:
        header = self.headers.get("Authorization") or ""
        token = header[7:] if header.startswith("Bearer ") else ""
        with self.owner.lock:
            found = self.owner.access.get(token)
        if found is None or found[1] < time.time():
            self._send(401, {"error": "invalid_token"}, WWW_Authenticate='Bearer error="invalid_token"')
            return
        user = self.owner.users[found[0]]
        if user.disabled:
            self._send(401, {"error": "invalid_token"})
            return
        self._send(200, user.claims())

    def _logout(self, q: dict[str, str]) -> None:
        self.owner.logouts.append(q)
        back = q.get("post_logout_redirect_uri", "")
        page = (
            "<!doctype html><html><head><title>Signed out</title></head><body><h1>Signed out of the test provider</h1>"
            f'<a id="back" href="{html.escape(back)}">Back</a></body></html>'
        )
        self._send(200, page, "text/html")

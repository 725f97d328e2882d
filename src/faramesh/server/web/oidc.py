"""The OpenID Connect relying party: discovery, the authorization request (code flow with
PKCE S256, `state` and `nonce`), the code exchange, ID token checks against the provider's
JWKS (with key rotation), refresh and userinfo for re-checks, and the end-session URL.

The protocol pieces come from maintained libraries: Authlib builds the authorization URL,
the PKCE challenge, the token requests and their client authentication, and holds the ID
token claim rules (`iss`, `aud`, `exp`, `iat`, `nonce`, `azp`, `at_hash`); joserfc checks the
signature against the provider's JSON Web Key Set. httpx carries the requests.

Errors are of two kinds: `ProviderRefused` (the provider or its tokens said no: the sign-in
fails, a session ends) and `ProviderUnavailable` (it could not be asked: try again later).
Neither ever lets anyone in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import orjson
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from faramesh.sso import SsoConfig, url_allowed

DISCOVERY_TTL = 3600.0  # seconds the provider's metadata and keys are kept
HTTP_TIMEOUT = 10.0
LEEWAY = 60  # seconds of clock difference allowed on exp and iat
# Asymmetric signatures only: never "none", never a MAC keyed with the client secret.
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
MAX_RESPONSE = 256 * 1024


class ProviderRefused(Exception):
    """The provider, or what it sent, refuses this sign-in or session."""


class ProviderUnavailable(Exception):
    """The provider could not be reached, or answered with a server error."""


@dataclass(frozen=True)
class Metadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    end_session_endpoint: str | None
    algorithms: tuple[str, ...]
    auth_methods: tuple[str, ...]


@dataclass(frozen=True)
class LoginRequest:
    """Where to send the browser, and what must come back with it (kept in a cookie)."""

    url: str
    state: str
    nonce: str
    verifier: str


@dataclass(frozen=True)
class Tokens:
    id_token: str | None
    access_token: str | None
    refresh_token: str | None
    access_expires_at: float | None

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> Tokens:
        data = orjson.loads(text)
        return cls(
            id_token=data.get("id_token"),
            access_token=data.get("access_token"),
            refresh_token=data.get("refresh_token"),
            access_expires_at=data.get("access_expires_at"),
        )


@dataclass(frozen=True)
class Verified:
    """What a sign-in or re-check established: the checked claims (with userinfo's groups
    where the ID token has none) and the tokens to keep for the next re-check."""

    claims: dict[str, Any]
    tokens: Tokens


class OidcClient:
    def __init__(self, config: SsoConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._transport = transport
        self._metadata: Metadata | None = None
        self._keys: KeySet | None = None
        self._loaded_at = float("-inf")
        self._lock: asyncio.Lock | None = None

    # -- the provider's metadata and keys ----------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=HTTP_TIMEOUT, transport=self._transport, follow_redirects=False)

    def _checked_url(self, url: Any, what: str) -> str:
        if not isinstance(url, str) or not url_allowed(url, loopback_http=self.config.loopback_http):
            raise ProviderRefused(f"the provider's {what} is not an https URL: {url!r}")
        return url

    async def _get_json(self, url: str, *, headers: Mapping[str, str] | None = None) -> Any:
        try:
            async with self._http() as http:
                response = await http.get(url, headers=dict(headers or {}))
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"could not reach {url}: {type(exc).__name__}") from None
        return _json_of(response, url)

    async def metadata(self, *, refresh_keys: bool = False) -> Metadata:
        """The provider's discovery document (cached), checked against the configured issuer."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            fresh = time.monotonic() - self._loaded_at < DISCOVERY_TTL
            if self._metadata is None or not fresh:
                self._metadata = await self._discover()
                self._keys = None
                self._loaded_at = time.monotonic()
            if self._keys is None or refresh_keys:
                self._keys = await self._fetch_keys(self._metadata.jwks_uri)
            return self._metadata

    async def _discover(self) -> Metadata:
        url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc = await self._get_json(url)
        if not isinstance(doc, dict):
            raise ProviderRefused("the provider's discovery document is not a JSON object")
        # OpenID Connect Discovery: the document must name exactly the configured issuer.
        if doc.get("issuer") != self.config.issuer:
            raise ProviderRefused(
                f"the provider calls itself {doc.get('issuer')!r}, not {self.config.issuer!r} (FARAMESH_OIDC_ISSUER)"
            )
        supported = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = tuple(a for a in SIGNING_ALGORITHMS if a in supported)
        if not algorithms:
            raise ProviderRefused(f"the provider signs ID tokens with none of {', '.join(SIGNING_ALGORITHMS)}")
        optional = {k: doc.get(k) for k in ("userinfo_endpoint", "end_session_endpoint")}
        return Metadata(
            issuer=doc["issuer"],
            authorization_endpoint=self._checked_url(doc.get("authorization_endpoint"), "authorization endpoint"),
            token_endpoint=self._checked_url(doc.get("token_endpoint"), "token endpoint"),
            jwks_uri=self._checked_url(doc.get("jwks_uri"), "jwks_uri"),
            userinfo_endpoint=self._checked_url(optional["userinfo_endpoint"], "userinfo endpoint")
            if optional["userinfo_endpoint"]
            else None,
            end_session_endpoint=self._checked_url(optional["end_session_endpoint"], "end-session endpoint")
            if optional["end_session_endpoint"]
            else None,
            algorithms=algorithms,
            auth_methods=tuple(doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]),
        )

    async def _fetch_keys(self, url: str) -> KeySet:
        data = await self._get_json(url)
        try:
            return KeySet.import_key_set(data)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ProviderRefused(f"the provider's key set cannot be read: {exc}") from None

    # -- sign-in ---------------------------------------------------------------------
    async def login_request(self, redirect_uri: str) -> LoginRequest:
        meta = await self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        url = prepare_grant_uri(
            meta.authorization_endpoint,
            client_id=self.config.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=" ".join(self.config.scopes),
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        return LoginRequest(url=url, state=state, nonce=nonce, verifier=verifier)

    async def finish_login(self, *, code: str, redirect_uri: str, verifier: str, nonce: str) -> Verified:
        """Exchange the code (with the PKCE verifier) and check the ID token it brings."""
        meta = await self.metadata()
        answer = await self._token_request(
            meta, "authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=verifier
        )
        tokens = _tokens_of(answer, previous=None)
        if not tokens.id_token:
            raise ProviderRefused("the provider sent no ID token (is the openid scope allowed for this client?)")
        claims = await self._verify_id_token(tokens.id_token, nonce=nonce, access_token=tokens.access_token)
        return Verified(await self._with_userinfo(meta, claims, tokens), tokens)

    # -- re-check ----------------------------------------------------------------------
    async def recheck(self, tokens: Tokens, subject: str) -> Verified:
        """Ask the provider again who this is and which groups they are in: a refresh grant
        when there is a refresh token (a disabled account or ended provider session fails
        it), else userinfo while the access token lasts. The subject must not change."""
        meta = await self.metadata()
        if tokens.refresh_token:
            answer = await self._token_request(meta, "refresh_token", refresh_token=tokens.refresh_token)
            fresh = _tokens_of(answer, previous=tokens)
            claims: dict[str, Any] = {"sub": subject}
            if answer.get("id_token"):
                # A refreshed ID token is checked like the first, except for the nonce.
                claims = await self._verify_id_token(fresh.id_token or "", nonce=None, access_token=fresh.access_token)
            verified = Verified(await self._with_userinfo(meta, claims, fresh, force=not answer.get("id_token")), fresh)
        elif tokens.access_token and (tokens.access_expires_at is None or tokens.access_expires_at > time.time()):
            claims = await self._with_userinfo(meta, {"sub": subject}, tokens, force=True)
            verified = Verified(claims, tokens)
        else:
            raise ProviderRefused("the session cannot be renewed: the provider gave no refresh token")
        if verified.claims.get("sub") != subject:
            raise ProviderRefused("the provider now names a different subject")
        return verified

    async def _with_userinfo(
        self, meta: Metadata, claims: dict[str, Any], tokens: Tokens, *, force: bool = False
    ) -> dict[str, Any]:
        """The ID token's claims, completed from userinfo when the groups claim is missing."""
        if not force and self.config.groups_claim in claims:
            return claims
        if meta.userinfo_endpoint is None or not tokens.access_token:
            if force:
                raise ProviderRefused("the provider has no userinfo endpoint to re-check the groups with")
            return claims
        info = await self._get_userinfo(meta.userinfo_endpoint, tokens.access_token)
        if info.get("sub") != claims.get("sub"):
            raise ProviderRefused("userinfo names a different subject than the ID token")
        # The signed ID token wins; userinfo only adds what it lacks.
        return {**info, **claims} if not force else {**claims, **info}

    async def _get_userinfo(self, url: str, access_token: str) -> dict[str, Any]:
        try:
            async with self._http() as http:
                response = await http.get(url, headers={"Authorization": f"Bearer {access_token}"})
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"could not reach the userinfo endpoint: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise ProviderRefused("the provider no longer accepts this session's access token")
        data = _json_of(response, "the userinfo endpoint")
        if not isinstance(data, dict):
            raise ProviderRefused("userinfo is not a JSON object")
        return data

    async def _token_request(self, meta: Metadata, grant_type: str, **params: str) -> dict[str, Any]:
        body = prepare_token_request(grant_type, **params)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        auth = ClientAuth(self.config.client_id, self.config.client_secret, self._auth_method(meta))
        url, headers, body = auth.prepare("POST", meta.token_endpoint, headers, body)
        try:
            async with self._http() as http:
                response = await http.post(url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"could not reach the token endpoint: {type(exc).__name__}") from None
        if 400 <= response.status_code < 500:
            error = _error_of(response)
            raise ProviderRefused(f"the provider refused the {grant_type.replace('_', ' ')}: {error}")
        data = _json_of(response, "the token endpoint")
        if not isinstance(data, dict) or not isinstance(data.get("access_token", ""), str):
            raise ProviderRefused("the token response is not a JSON object with tokens")
        return data

    def _auth_method(self, meta: Metadata) -> str:
        if not self.config.client_secret:
            return "none"  # a public client: PKCE is its proof
        if "client_secret_basic" in meta.auth_methods:
            return "client_secret_basic"
        if "client_secret_post" in meta.auth_methods:
            return "client_secret_post"
        raise ProviderRefused("the provider supports neither client_secret_basic nor client_secret_post")

    async def _verify_id_token(self, id_token: str, *, nonce: str | None, access_token: str | None) -> dict[str, Any]:
        meta = await self.metadata()
        assert self._keys is not None
        try:
            try:
                token = jwt.decode(id_token, self._keys, algorithms=list(meta.algorithms))
            except InvalidKeyIdError:
                # Signed with a key we have not seen: the provider may have rotated its keys.
                await self.metadata(refresh_keys=True)
                token = jwt.decode(id_token, self._keys, algorithms=list(meta.algorithms))
            claims = CodeIDToken(
                token.claims,
                token.header,
                {
                    "iss": {"essential": True, "value": meta.issuer},
                    "aud": {"essential": True, "value": self.config.client_id},
                },
                {"nonce": nonce, "client_id": self.config.client_id, "access_token": access_token},
            )
            claims.validate(leeway=LEEWAY)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ProviderRefused(f"the ID token is not valid: {_describe(exc)}") from None
        if nonce is None and "nonce" in token.claims and not isinstance(token.claims["nonce"], str):
            raise ProviderRefused("the ID token's nonce is malformed")
        return dict(token.claims)

    # -- logout ------------------------------------------------------------------------
    async def end_session_url(self, tokens: Tokens | None, post_logout_redirect_uri: str) -> str | None:
        """The provider's end-session (RP-initiated logout) URL, or None when it has none."""
        try:
            meta = await self.metadata()
        except (ProviderRefused, ProviderUnavailable):
            return None
        if meta.end_session_endpoint is None:
            return None
        params = [("client_id", self.config.client_id), ("post_logout_redirect_uri", post_logout_redirect_uri)]
        if tokens is not None and tokens.id_token:
            params.insert(0, ("id_token_hint", tokens.id_token))
        return str(add_params_to_uri(meta.end_session_endpoint, params))


def _json_of(response: httpx.Response, where: str) -> Any:
    if response.status_code >= 500:
        raise ProviderUnavailable(f"{where} answered {response.status_code}")
    if response.status_code != 200:
        raise ProviderRefused(f"{where} answered {response.status_code}")
    if len(response.content) > MAX_RESPONSE:
        raise ProviderRefused(f"{where} sent more than {MAX_RESPONSE} bytes")
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise ProviderRefused(f"{where} did not answer with JSON") from None


def _error_of(response: httpx.Response) -> str:
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return f"HTTP {response.status_code}"
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        description = data.get("error_description")
        detail = f" ({description[:200]})" if isinstance(description, str) and description else ""
        return str(data["error"])[:100] + detail
    return f"HTTP {response.status_code}"


def _tokens_of(answer: Mapping[str, Any], previous: Tokens | None) -> Tokens:
    expires_in = answer.get("expires_in")
    expires_at = time.time() + float(expires_in) if isinstance(expires_in, (int, float)) else None

    def text(name: str) -> str | None:
        value = answer.get(name)
        return value if isinstance(value, str) and value else None

    return Tokens(
        id_token=text("id_token") or (previous.id_token if previous else None),
        access_token=text("access_token"),
        # A provider that does not rotate refresh tokens sends none back: keep the one we had.
        refresh_token=text("refresh_token") or (previous.refresh_token if previous else None),
        access_expires_at=expires_at,
    )


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]

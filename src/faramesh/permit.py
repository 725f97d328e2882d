"""Permits: proof, checked where the tool runs, that the server allowed exactly this call.

Every `allowed` or `approved` action carries `permit`, a compact JWS signed by the
server with Ed25519 (`alg: EdDSA`, `kid` in the header). Its claims bind the action id,
the tool, the operation, the hash of the exact arguments that may run (the approved
ones, after an edit), the policy hash, the approvers and an expiry. The place where the
side effect happens checks it offline, against the server's public keys:

    from faramesh.permit import PermitKeys, verify_permit
    keys = PermitKeys.from_url("https://faramesh.internal/v1/permits/keys")  # once
    claims = verify_permit(action["permit"], tool="refund", operation="process",
                           params=params, keys=keys)   # raises PermitError if not

A permit proves what may run; it does not make the run single-use on its own. The
agent takes the one start (`POST /v1/actions/{id}/start`) after verifying it.

This module needs only the light (client) install: joserfc, httpx, orjson. The server
signs with `encode_permit` so the format lives in one place.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import threading
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwk import OKPKey
from joserfc.jws import JWSRegistry

from faramesh.canonical import NonCanonicalValue, fast_canonical

__all__ = [
    "ALG",
    "PermitActionMismatch",
    "PermitArgumentsMismatch",
    "PermitClaims",
    "PermitError",
    "PermitExpired",
    "PermitKeys",
    "PermitKeysUnavailable",
    "PermitMalformed",
    "PermitMismatch",
    "PermitOperationMismatch",
    "PermitSignatureInvalid",
    "PermitToolMismatch",
    "PermitUnknownKey",
    "encode_permit",
    "params_hash",
    "read_permit",
    "verify_action",
    "verify_permit",
]

ALG = "EdDSA"
ISSUER = "faramesh"
MAX_PERMIT = 16_384  # characters; a real permit is under 1 KB
# Seconds between fetches of a key URL while a permit names a kid it does not hold, and
# how long fetched keys are trusted before they are fetched again.
REFETCH_UNKNOWN = 10.0
KEYS_MAX_AGE = 300.0


# -- errors ------------------------------------------------------------------------
class PermitError(Exception):
    """The permit does not allow this call. `reason` names what failed, one of
    malformed, keys, unknown_key, signature, expired, action, tool, operation, arguments."""

    reason = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PermitMalformed(PermitError):
    """Not a Faramesh permit: not a compact JWS, another algorithm, or claims missing."""

    reason = "malformed"


class PermitKeysUnavailable(PermitError):
    """The public keys could not be loaded (URL unreachable, file unreadable, bad JWKS)."""

    reason = "keys"


class PermitSignatureInvalid(PermitError):
    """The signature does not verify: the permit was altered or not made by this server."""

    reason = "signature"


class PermitUnknownKey(PermitSignatureInvalid):
    """The permit names a signing key (`kid`) the given keys do not hold."""

    reason = "unknown_key"


class PermitExpired(PermitError):
    """The permit's `exp` has passed; read the action again for a fresh one."""

    reason = "expired"

    def __init__(self, message: str, *, expired_at: float) -> None:
        super().__init__(message)
        self.expired_at = expired_at


class PermitMismatch(PermitError):
    """The permit is valid but for another call: `field` names what differs."""

    field = ""

    def __init__(self, message: str, *, expected: Any, actual: Any) -> None:
        super().__init__(message)
        self.expected = expected  # what the permit allows
        self.actual = actual  # what the caller is about to run


class PermitActionMismatch(PermitMismatch):
    reason = field = "action"


class PermitToolMismatch(PermitMismatch):
    reason = field = "tool"


class PermitOperationMismatch(PermitMismatch):
    reason = field = "operation"


class PermitArgumentsMismatch(PermitMismatch):
    """The arguments differ from those the permit covers (as submitted, or as an approver edited them)."""

    reason = field = "arguments"


# -- the claims ----------------------------------------------------------------------
@dataclass(frozen=True)
class PermitClaims:
    """What a permit allows: one run of `tool`/`operation` with the arguments hashed as `params_hash`."""

    action_id: str
    tool: str
    operation: str
    request_hash: str  # the action's request hash (agent, tool, operation, params, context)
    params_hash: str  # SHA-256 of the canonical JSON of the params that may run
    policy_hash: str
    approvers: tuple[str, ...]  # key ids whose approvals counted; empty when allowed outright
    agent_id: str
    status: str  # allowed or approved
    issued_at: int
    expires_at: int
    kid: str

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], kid: str) -> PermitClaims:
        try:
            values = {name: payload[claim] for name, claim in _CLAIMS.items()}
        except KeyError as missing:
            raise PermitMalformed(f"the permit has no {missing.args[0]!r} claim") from None
        if payload.get("iss") != ISSUER:
            raise PermitMalformed(f"the permit was not issued by {ISSUER} (iss is {payload.get('iss')!r})")
        strings = ("action_id", "tool", "operation", "request_hash", "params_hash", "policy_hash", "agent_id", "status")
        if not all(isinstance(values[name], str) for name in strings):
            raise PermitMalformed("the permit's claims are not all strings where strings belong")
        approvers = values["approvers"]
        if not isinstance(approvers, list) or not all(isinstance(a, str) for a in approvers):
            raise PermitMalformed("the permit's approvers claim is not a list of key ids")
        for name in ("issued_at", "expires_at"):
            if type(values[name]) is not int:
                raise PermitMalformed(f"the permit's {_CLAIMS[name]} claim is not an integer time")
        return cls(**(values | {"approvers": tuple(approvers)}), kid=kid)

    def to_payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {claim: getattr(self, name) for name, claim in _CLAIMS.items()}
        data["approvers"] = list(self.approvers)
        return data | {"iss": ISSUER}


# PermitClaims field -> JWT claim name (the registered names where one exists).
_CLAIMS = {
    "action_id": "action_id",
    "tool": "tool",
    "operation": "operation",
    "request_hash": "request_hash",
    "params_hash": "params_hash",
    "policy_hash": "policy_hash",
    "approvers": "approvers",
    "agent_id": "agent_id",
    "status": "status",
    "issued_at": "iat",
    "expires_at": "exp",
}


def params_hash(params: Any) -> str:
    """SHA-256 of the canonical JSON of `params` (sorted keys, 1.0 written as 1): what a
    permit binds the arguments with. Raises ValueError/TypeError for values JSON cannot hold."""
    return hashlib.sha256(fast_canonical(params)).hexdigest()


class _Registry(JWSRegistry):
    """Only EdDSA. joserfc warns on every use of the name `EdDSA` (RFC 9864 prefers
    `Ed25519`); permits keep `EdDSA` because verifiers everywhere know it, so the
    warning is not raised on each permit."""

    def get_alg(self, name: str) -> Any:
        if name != ALG:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


_REGISTRY = _Registry(algorithms=[ALG])


def encode_permit(claims: PermitClaims, private_key: OKPKey) -> str:
    """Sign `claims` (the server's half) into a compact JWS (RFC 7515, section 7.1). The
    payload is canonical JSON, so a permit's bytes depend only on its claims.

    Every allowed submit signs one, so the three parts are joined here around the
    Ed25519 signature itself: joserfc's general serializer (header checks, registry and
    key lookups, its own JSON) added about half the signature's cost again. The result
    is byte for byte what `jws.serialize_compact` gives (a test holds it to that), and
    `verify_permit` reads permits with joserfc."""
    signer = private_key.private_key
    if not isinstance(signer, Ed25519PrivateKey):
        raise ValueError("a permit is signed with an Ed25519 private key")
    signing_input = _protected_header(claims.kid) + b"." + _b64url(fast_canonical(claims.to_payload()))
    return (signing_input + b"." + _b64url(signer.sign(signing_input))).decode("ascii")


@functools.lru_cache(maxsize=16)
def _protected_header(kid: str) -> bytes:
    return _b64url(orjson.dumps({"alg": ALG, "kid": kid, "typ": "JWT"}))


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _split(permit: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a permit, unverified; PermitMalformed if it is not one."""
    if not isinstance(permit, str) or not permit:
        raise PermitMalformed("the permit must be a non-empty string (the action's `permit` field)")
    if len(permit) > MAX_PERMIT:
        raise PermitMalformed(f"the permit is longer than {MAX_PERMIT} characters")
    parts = permit.split(".")
    if len(parts) != 3:
        raise PermitMalformed("the permit is not a compact JWS (three dot-separated parts)")
    try:
        header = orjson.loads(_b64(parts[0]))
        payload = orjson.loads(_b64(parts[1]))
    except (ValueError, orjson.JSONDecodeError):
        raise PermitMalformed("the permit's header or claims are not base64url JSON") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise PermitMalformed("the permit's header and claims must be JSON objects")
    if header.get("alg") != ALG:
        raise PermitMalformed(f"the permit must be signed with {ALG} (alg is {header.get('alg')!r})")
    if not isinstance(header.get("kid"), str):
        raise PermitMalformed("the permit's header names no signing key (kid)")
    return header, payload


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def read_permit(permit: str) -> PermitClaims:
    """The claims of a permit WITHOUT checking its signature or expiry: for display and
    for the audit check, never to decide whether a call may run (use `verify_permit`)."""
    header, payload = _split(permit)
    return PermitClaims.from_payload(payload, header["kid"])


# -- keys --------------------------------------------------------------------------
class PermitKeys:
    """Public keys to verify permits with, by kid: from a JWKS (dict), a JSON or PEM key
    file, or the server's `GET /v1/permits/keys` URL. A URL is fetched when first needed,
    again when a permit names a kid it does not hold (at most every REFETCH_UNKNOWN
    seconds: after a rotation) and after KEYS_MAX_AGE seconds. Thread-safe; build it once."""

    def __init__(self, keys: Mapping[str, OKPKey] | None = None, *, url: str | None = None, timeout: float = 5.0):
        self._keys: dict[str, OKPKey] = dict(keys or {})
        self._url = url
        self._timeout = timeout
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> PermitKeys:
        """A JWKS ({"keys": [...]}) or a single public JWK."""
        entries = jwks.get("keys") if "keys" in jwks else [jwks]
        if not isinstance(entries, list) or not entries:
            raise PermitKeysUnavailable("the JWKS holds no keys")
        keys: dict[str, OKPKey] = {}
        for entry in entries:
            if not isinstance(entry, Mapping) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
                continue  # not a key a permit is signed with
            public = {k: entry[k] for k in ("kty", "crv", "x") if k in entry}
            try:
                key = OKPKey.import_key(public)
            except (JoseError, ValueError, TypeError) as exc:
                raise PermitKeysUnavailable(f"a key in the JWKS cannot be read: {exc}") from None
            kid = entry.get("kid") or key.thumbprint()
            keys[str(kid)] = key
        if not keys:
            raise PermitKeysUnavailable("the JWKS holds no Ed25519 key")
        return cls(keys)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PermitKeys:
        """A JSON file (JWKS or one JWK) or a PEM public key (its kid is its RFC 7638
        thumbprint, as the server names its keys)."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PermitKeysUnavailable(f"cannot read the key file {path}: {exc.strerror}") from None
        if data.lstrip().startswith(b"-----BEGIN"):
            try:
                key = OKPKey.import_key(data)
            except (JoseError, ValueError, TypeError) as exc:
                raise PermitKeysUnavailable(f"{path} is not an Ed25519 public key: {exc}") from None
            public = OKPKey.import_key(key.as_dict(private=False))
            return cls({public.thumbprint(): public})
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise PermitKeysUnavailable(f"{path} is neither JSON (a JWKS) nor a PEM public key") from None
        if not isinstance(parsed, dict):
            raise PermitKeysUnavailable(f"{path} does not hold a JWKS object")
        return cls.from_jwks(parsed)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 5.0) -> PermitKeys:
        """The server's JWKS URL (e.g. https://faramesh.internal/v1/permits/keys), fetched lazily."""
        return cls(url=url, timeout=timeout)

    def kids(self) -> list[str]:
        return sorted(self._keys)

    def key_for(self, kid: str) -> OKPKey:
        """The public key named `kid`; PermitUnknownKey if there is none."""
        with self._lock:
            if self._url is not None and self._due(missing=kid not in self._keys):
                try:
                    self._fetch()
                except PermitKeysUnavailable:
                    if kid not in self._keys:
                        raise
                    # The key was fetched before: it still verifies what the server signed with it.
            key = self._keys.get(kid)
        if key is None:
            known = f" (it publishes {', '.join(self.kids())})" if self._keys else ""
            raise PermitUnknownKey(
                f"the permit was signed with key {kid!r}, which is not among the server's published keys{known}"
            )
        return key

    def _due(self, *, missing: bool) -> bool:
        """Whether the URL should be fetched now."""
        if self._fetched_at is None:
            return True
        age = time.monotonic() - self._fetched_at
        return age >= KEYS_MAX_AGE or (missing and age >= REFETCH_UNKNOWN)

    def _fetch(self) -> None:
        import httpx  # only for key URLs

        assert self._url is not None
        try:
            response = httpx.get(self._url, timeout=self._timeout, follow_redirects=False)
            response.raise_for_status()
            jwks = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PermitKeysUnavailable(f"cannot fetch the permit keys from {self._url}: {exc}") from None
        if not isinstance(jwks, dict):
            raise PermitKeysUnavailable(f"{self._url} did not answer with a JWKS")
        self._keys = PermitKeys.from_jwks(jwks)._keys
        self._fetched_at = time.monotonic()


def _keys_of(keys: PermitKeys | Mapping[str, Any] | str | os.PathLike[str]) -> PermitKeys:
    if isinstance(keys, PermitKeys):
        return keys
    if isinstance(keys, Mapping):
        return PermitKeys.from_jwks(keys)
    text = os.fspath(keys)
    if text.startswith(("http://", "https://")):
        return PermitKeys.from_url(text)
    return PermitKeys.from_file(text)


# -- verification --------------------------------------------------------------------
def verify_permit(
    permit: Any,
    *,
    tool: str,
    operation: str,
    params: Any,
    keys: PermitKeys | Mapping[str, Any] | str | os.PathLike[str],
    action_id: str | None = None,
    now: float | None = None,
    leeway: float = 0.0,
) -> PermitClaims:
    """Check, offline, that `permit` allows running `tool`/`operation` with `params` now.

    `keys`: a `PermitKeys` (build one once and reuse it), a JWKS dict, the server's
    `/v1/permits/keys` URL, or a key file (JWKS JSON or PEM). `action_id`, when given,
    must be the permit's. `now` (seconds since the epoch) and `leeway` (allowed clock
    skew) decide expiry. Returns the claims; raises a PermitError subclass naming what
    failed: PermitMalformed, PermitKeysUnavailable, PermitUnknownKey,
    PermitSignatureInvalid, PermitExpired, PermitActionMismatch, PermitToolMismatch,
    PermitOperationMismatch or PermitArgumentsMismatch.
    """
    header, payload = _split(permit)
    key = _keys_of(keys).key_for(header["kid"])
    try:
        # validate_compact answers False for a bad signature; only malformed input raises.
        valid = jws.validate_compact(jws.extract_compact(permit.encode()), key, registry=_REGISTRY)
    except (JoseError, ValueError):
        valid = False
    if valid is not True:
        raise PermitSignatureInvalid(
            "the permit's signature does not verify: it was altered or not signed by this server"
        )
    claims = PermitClaims.from_payload(payload, header["kid"])
    at = time.time() if now is None else now
    if at > claims.expires_at + leeway:
        raise PermitExpired(
            f"the permit expired {round(at - claims.expires_at)}s ago; read the action again for a fresh one",
            expired_at=claims.expires_at,
        )
    if action_id is not None and action_id != claims.action_id:
        raise PermitActionMismatch(
            f"the permit is for action {claims.action_id}, not {action_id}", expected=claims.action_id, actual=action_id
        )
    _same_name(claims.tool, tool, PermitToolMismatch, "tool")
    _same_name(claims.operation, operation, PermitOperationMismatch, "operation")
    try:
        actual = params_hash(params)
    except (NonCanonicalValue, ValueError, TypeError) as exc:
        raise PermitArgumentsMismatch(
            f"the arguments cannot be compared with the permit: they are not plain JSON ({exc})",
            expected=claims.params_hash,
            actual=None,
        ) from None
    if actual != claims.params_hash:
        raise PermitArgumentsMismatch(
            "the arguments differ from those the permit allows (params hash "
            f"{actual[:12]}… against {claims.params_hash[:12]}…); run the params of the allowed "
            "or approved action, which an approver may have edited",
            expected=claims.params_hash,
            actual=actual,
        )
    return claims


def verify_action(
    action: Mapping[str, Any],
    *,
    tool: str,
    operation: str,
    params: Any,
    keys: PermitKeys | Mapping[str, Any] | str | os.PathLike[str],
    now: float | None = None,
    leeway: float = 0.0,
) -> PermitClaims:
    """`verify_permit` for an action as the API returns it: its `permit` must allow this
    call for this very action. An action without a permit (denied, held, already started,
    or from a server without permits) raises PermitMalformed: nothing runs."""
    permit = action.get("permit")
    if permit is None:
        raise PermitMalformed(
            f"action {action.get('id')} carries no permit (status {action.get('status')!r}): it may not run now"
        )
    return verify_permit(
        permit,
        tool=tool,
        operation=operation,
        params=params,
        keys=keys,
        action_id=str(action.get("id")),
        now=now,
        leeway=leeway,
    )


def _same_name(allowed: str, given: Any, error: type[PermitMismatch], what: str) -> None:
    # The server stores names NFKC-normalised; compare the caller's the same way.
    normalized = unicodedata.normalize("NFKC", given) if isinstance(given, str) else given
    if normalized != allowed:
        raise error(f"the permit is for {what} {allowed!r}, not {given!r}", expected=allowed, actual=given)

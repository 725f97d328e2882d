"""The Ed25519 keys that sign permits: made on first start, shared by every replica,
rotated by `faramesh permits rotate-key`.

Where they live: the `permit_keys` table, so every replica on one database signs with
the same key and `GET /v1/permits/keys` publishes the same set everywhere. The private
half is encrypted (Fernet: AES-128-CBC with HMAC-SHA256, from `cryptography`) under a key
derived with HKDF from the server secret, so a database dump alone cannot forge permits.
The server secret is `FARAMESH_SECRET_KEY` when set (replicas must share it, as they
already do for dashboard sessions); without it, a random secret is made once in a file
with permissions 0600 beside the SQLite database (for PostgreSQL: in the working
directory). Each key row records which secret sealed it (`secret_id`), so a replica
with another secret refuses to start instead of failing to sign later.

Rotation retires the signing key and makes a new one in one transaction; the retired
key's public half stays published until every permit it signed has expired.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import secrets
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.jwk import OKPKey

from faramesh import audit
from faramesh.errors import Unavailable
from faramesh.permit import ALG
from faramesh.storage import DuplicateRow, Store, database_file, permit_keys_repo
from faramesh.storage.permit_keys_repo import Connection, PermitKeyRow

log = logging.getLogger("faramesh.service")

SECRET_FILE = "faramesh.secret"
SECRET_ENV = "FARAMESH_SECRET_KEY"
# Seconds a replica keeps using the key it loaded before it looks again (another replica
# or the CLI may have rotated it), and extra time a retired key stays published.
RELOAD_INTERVAL = 5.0
PUBLISH_SLACK = 60.0
KEY_CREATED = "permits.key_created"
KEY_ROTATED = "permits.key_rotated"


class PermitKeyError(Unavailable):
    """Permits cannot be signed: no usable key (503, so nothing runs on a missing permit)."""


# -- the server secret ---------------------------------------------------------------
@dataclass(frozen=True)
class ServerSecret:
    value: bytes
    source: str  # FARAMESH_SECRET_KEY, or the file it was read from

    @property
    def sealer(self) -> Sealer:
        return Sealer(self.value)


def secret_file_path(database_url: str) -> Path:
    """Beside a SQLite database file; in the working directory otherwise."""
    db_file = database_file(database_url)
    return (db_file.parent if db_file is not None else Path.cwd()) / SECRET_FILE


def server_secret(secret_key: str | None, database_url: str, *, create: bool = True) -> ServerSecret:
    """FARAMESH_SECRET_KEY if set, else the secret file (made once, mode 0600, when `create`)."""
    if secret_key:
        return ServerSecret(secret_key.encode(), SECRET_ENV)
    path = secret_file_path(database_url)
    if not path.exists():
        if not create:
            raise PermitKeyError(f"no server secret: set {SECRET_ENV} or run where {path} is")
        _create_secret_file(path)
    try:
        value = path.read_bytes().strip()
    except OSError as exc:
        raise PermitKeyError(f"cannot read the server secret {path}: {exc.strerror}") from None
    if len(value) < 32:
        raise PermitKeyError(f"the server secret {path} is too short; remove it or set {SECRET_ENV}")
    return ServerSecret(value, str(path))


def _create_secret_file(path: Path) -> None:
    """Write a random secret readable by its owner only. Written to a private temporary
    file and linked into place, so two processes starting at once end up with one secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".faramesh-secret-")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, secrets.token_urlsafe(48).encode() + b"\n")
        os.fsync(fd)
        os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class Sealer:
    """Encrypts private keys under a key derived from the server secret."""

    def __init__(self, secret: bytes) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"faramesh permit keys v1").derive(secret)
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))
        # Names the secret without revealing it: a different secret gives another id.
        self.secret_id = hashlib.sha256(b"faramesh secret id\x00" + derived).hexdigest()[:32]

    def seal(self, data: bytes) -> str:
        return self._fernet.encrypt(data).decode()

    def open(self, token: str) -> bytes:
        return self._fernet.decrypt(token.encode())


# -- keys ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SigningKey:
    kid: str
    key: OKPKey


def _public_jwk(key: OKPKey, kid: str) -> dict[str, Any]:
    return key.as_dict(private=False) | {"kid": kid, "alg": ALG, "use": "sig"}


def new_key_values(sealer: Sealer, now: float) -> tuple[SigningKey, dict[str, Any]]:
    """A fresh Ed25519 key and the row that stores it (private half sealed)."""
    key = OKPKey.generate_key("Ed25519", private=True)
    kid = key.thumbprint()
    values = {
        "kid": kid,
        "public_jwk": orjson.dumps(_public_jwk(key, kid)).decode(),
        "private_key": sealer.seal(orjson.dumps(key.as_dict(private=True))),
        "secret_id": sealer.secret_id,
        "created_at": now,
    }
    return SigningKey(kid, key), values


def _unseal(row: PermitKeyRow, sealer: Sealer) -> SigningKey:
    if row.secret_id != sealer.secret_id:
        raise PermitKeyError(
            f"the permit signing key {row.kid} was encrypted under another server secret; set "
            f"{SECRET_ENV} to the value it was made with (the same on every replica), or make a new key "
            "under this secret with `faramesh permits rotate-key --new-secret`"
        )
    try:
        jwk = orjson.loads(sealer.open(row.private_key))
        key = OKPKey.import_key(jwk)
    except (InvalidToken, orjson.JSONDecodeError, ValueError) as exc:
        raise PermitKeyError(f"the permit signing key {row.kid} cannot be decrypted: {type(exc).__name__}") from None
    return SigningKey(str(row.kid), key)


def _install(conn: Connection, values: dict[str, Any], *, actor: str, event: str, data: dict[str, Any]) -> None:
    permit_keys_repo.insert_active(conn, **values)
    audit.append(
        conn,
        event=event,
        ts=values["created_at"],
        actor=actor,
        data=data | {"kid": values["kid"], "public_jwk": orjson.loads(values["public_jwk"])},
    )


def ensure_key(store: Store, sealer: Sealer, now: float, *, actor: str = "serve") -> SigningKey:
    """The active signing key, made now if there is none; PermitKeyError if it cannot be used."""
    row = store.read(permit_keys_repo.active)
    if row is None:
        key, values = new_key_values(sealer, now)
        try:
            store.write(lambda conn: _install(conn, values, actor=actor, event=KEY_CREATED, data={}))
            log.info("made the permit signing key %s", key.kid)
            return key
        except DuplicateRow:  # another replica made one at the same moment: use it
            row = store.read(permit_keys_repo.active)
            if row is None:
                raise
    return _unseal(row, sealer)


def rotate(store: Store, sealer: Sealer, now: float, *, publish_for: float, actor: str) -> tuple[str | None, str]:
    """Retire the signing key (published `publish_for` seconds more) and make a new one:
    (the old kid or None, the new kid)."""
    key, values = new_key_values(sealer, now)

    def txn(conn: Connection) -> str | None:
        old = permit_keys_repo.retire_active(conn, now=now, publish_until=now + publish_for)
        _install(
            conn,
            values,
            actor=actor,
            event=KEY_ROTATED,
            data={"retired_kid": old, "retired_published_until": now + publish_for if old else None},
        )
        return old

    old = store.write(txn)
    return old, key.kid


def key_rows(store: Store) -> list[PermitKeyRow]:
    """Every key ever made, newest first."""
    return store.read(permit_keys_repo.all_keys)


def active_row(store: Store) -> PermitKeyRow | None:
    """The signing key's row (its private half still sealed), if there is one."""
    return store.read(permit_keys_repo.active)


# -- the process's view ----------------------------------------------------------------
class SigningKeys:
    """The key this process signs with and the keys it publishes, re-read from the
    database every RELOAD_INTERVAL seconds of the service clock, so a rotation made by
    another replica or the CLI is picked up. Until then the old key keeps signing; it
    is still published, so those permits verify."""

    def __init__(self, store: Store, secret: Callable[[], ServerSecret], clock: Callable[[], float]) -> None:
        self._store = store
        self._secret = secret
        self._clock = clock
        self._lock = threading.Lock()
        self._sealer: Sealer | None = None
        self._signing: SigningKey | None = None
        self._jwks: dict[str, Any] | None = None
        self._problem: PermitKeyError | None = None  # why the active key cannot sign here
        self._loaded_at: float | None = None

    @property
    def sealer(self) -> Sealer:
        if self._sealer is None:
            self._sealer = self._secret().sealer
        return self._sealer

    def ensure(self) -> SigningKey:
        """At start: make the first key if there is none, and prove this process can use it."""
        key = ensure_key(self._store, self.sealer, self._clock())
        self.reload()
        return key

    def reload(self) -> None:
        """Forget what was loaded: the next use reads the keys again."""
        with self._lock:
            self._loaded_at = None

    def signing_key(self) -> SigningKey:
        """The key to sign with now. Call it outside a write transaction: when there is no
        key yet (a Governor used without the app's start-up), it makes the first one."""
        with self._lock:
            self._refresh()
            if self._signing is None and self._problem is None:
                ensure_key(self._store, self.sealer, self._clock())
                self._loaded_at = None
                self._refresh()
            if self._problem is not None:
                raise self._problem
            if self._signing is None:
                raise PermitKeyError("no permit signing key: restart the server, or run `faramesh permits rotate-key`")
            return self._signing

    def loaded_key(self) -> SigningKey | None:
        """The key to sign with now if that needs no database read (loaded less than
        RELOAD_INTERVAL ago and usable); None when `signing_key` would read the keys.
        For a caller that must not wait on the database (the event loop, PostgreSQL):
        it never waits for the lock either, which a reload holds while it reads."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            now = self._clock()
            if self._loaded_at is None or not 0 <= now - self._loaded_at < RELOAD_INTERVAL:
                return None
            return self._signing if self._problem is None else None
        finally:
            self._lock.release()

    def jwks(self) -> dict[str, Any]:
        """The published public keys; served even when this process cannot sign."""
        with self._lock:
            self._refresh()
            return self._jwks or {"keys": []}

    def _refresh(self) -> None:
        now = self._clock()
        if self._loaded_at is not None and 0 <= now - self._loaded_at < RELOAD_INTERVAL:
            return
        active, published = self._store.read(
            lambda conn: (permit_keys_repo.active(conn), permit_keys_repo.published(conn, now))
        )
        self._jwks = {"keys": [orjson.loads(row.public_jwk) for row in published]}
        self._problem = None
        if active is None:
            self._signing = None
        elif self._signing is None or self._signing.kid != active.kid:
            try:
                self._signing = _unseal(active, self.sealer)
            except PermitKeyError as exc:  # e.g. rotated under another secret: fail closed on signing
                self._signing, self._problem = None, exc
        self._loaded_at = now

"""Resolve the caller's identity from `Authorization: Bearer <key>`."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from faramesh import service_reads
from faramesh.errors import Forbidden, RateLimited, Unauthorized
from faramesh.model import Identity
from faramesh.server.ratelimit import RateLimiter, retry_after_header
from faramesh.service import Governor

log = logging.getLogger("faramesh.server")

# Background re-reads of remembered keys, held so they are not collected mid-run.
_refreshes: set[asyncio.Task[None]] = set()


def bearer_key(request: Request) -> str | None:
    """The key from `Authorization: Bearer <key>`, the only way the API takes a key.

    No other header (such as X-API-Key) is read: one documented way in, so a proxy
    that strips or logs Authorization is not bypassed by a header it does not know.
    """
    return bearer_secret(request.headers.get("authorization"))


def bearer_secret(header: str | None) -> str | None:
    """The key in an Authorization header's value, when it is `Bearer <key>`."""
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


# Declares the scheme in the OpenAPI schema, so /docs has an "Authorize" button and marks
# every route that takes a key; it never refuses anything itself (current_identity does).
bearer_scheme = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="fm_…",
    description="An API key (`faramesh keys create`), sent as `Authorization: Bearer <key>`.",
    auto_error=False,
)


async def identify(state: Any, secret: str | None) -> Identity:
    """The identity behind a presented key, rate-limited per key; raises Unauthorized or
    RateLimited. `state` is the app's state (its governor and rate limiter)."""
    if not secret:
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    governor: Governor = state.governor
    # A key verified moments ago needs no database read and no worker thread.
    identity, refresh_due = governor.remembered(secret)
    if identity is None:
        identity = await run_in_threadpool(service_reads.authenticate, governor, secret)
    elif refresh_due:
        _refresh_in_background(governor, secret)
    if identity is None:
        raise Unauthorized("invalid or revoked API key")
    # Limited per key, after the key is known: floods without a valid key hold no state.
    limiter: RateLimiter | None = getattr(state, "rate_limiter", None)
    if limiter is not None:
        wait = limiter.check(identity.key_id)
        if wait is not None:
            seconds = int(retry_after_header(wait))
            raise RateLimited(
                f"too many requests for this API key (limit {limiter.rate}); retry in {seconds}s",
                retry_after=seconds,
            )
    return identity


def _refresh_in_background(governor: Governor, secret: str) -> None:
    """Re-read a remembered key while its requests go on being answered from memory
    (service/key_cache.py): the request that claimed the re-read does not wait for it."""
    task = asyncio.get_running_loop().create_task(_refresh(governor, secret))
    _refreshes.add(task)
    task.add_done_callback(_refreshes.discard)


async def _refresh(governor: Governor, secret: str) -> None:
    try:
        await run_in_threadpool(service_reads.refresh_key, governor, secret)
    except Exception:
        # The entry still expires when it would have; its next request then reads the
        # key itself and fails closed if the database still cannot answer.
        log.warning("re-reading an API key in the background failed", exc_info=True)


async def current_identity(
    request: Request, _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)] = None
) -> Identity:
    identity = await identify(request.app.state, bearer_key(request))
    request.state.identity = identity
    return identity


async def admin_identity(identity: Annotated[Identity, Depends(current_identity)]) -> Identity:
    if not identity.is_admin:
        raise Forbidden("this requires an admin key")
    return identity


CurrentIdentity = Annotated[Identity, Depends(current_identity)]
AdminIdentity = Annotated[Identity, Depends(admin_identity)]

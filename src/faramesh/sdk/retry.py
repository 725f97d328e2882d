"""When the SDK asks again, and how long it waits in between.

Only requests that are safe to repeat are retried: waits and reads, a result report, and
a submit that carries an Idempotency-Key (the server answers a repeat with the action the
first one created, so a submit whose answer was lost cannot create a second action). They
are retried on what a restart, a deploy or a lost replica looks like: the server cannot be
reached, or answers 502/503/504 (503 + Retry-After while it stops), or 429. Each retry waits
a capped exponential backoff with jitter, at least the server's Retry-After, and never
past the caller's deadline. At the deadline the caller gets `ServerUnavailable`: an
`ApprovalTimeout` (nothing ran) that is also a `FarameshConnectionError`.
"""

from __future__ import annotations

import random
import time

from faramesh.sdk.errors import (
    FarameshConnectionError,
    RateLimitError,
    ServerError,
    ServerUnavailable,
)

RETRY_STATUSES = frozenset({502, 503, 504})
BACKOFF_BASE = 0.25  # seconds before the first retry (before jitter)
BACKOFF_CAP = 5.0  # longest pause between two tries (before jitter)
RETRY_AFTER_CAP = 60.0  # a Retry-After longer than this is not waited for in one go


def retryable(exc: BaseException) -> bool:
    """Whether a failed request that is safe to repeat should be tried again."""
    if isinstance(exc, FarameshConnectionError | RateLimitError):
        return True
    return isinstance(exc, ServerError) and exc.status_code in RETRY_STATUSES


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before try number `attempt + 1` (attempt counts from 0)."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return float(delay)


def next_delay(
    exc: BaseException, attempt: int, deadline: float | None, what: str, *, action_id: str | None = None
) -> float:
    """Seconds to wait before trying again after `exc`; raises instead when `exc` is not
    worth retrying (it is re-raised) or the deadline (time.monotonic) has passed
    (ServerUnavailable, chained to `exc`)."""
    if not retryable(exc):
        raise exc
    left = None if deadline is None else deadline - time.monotonic()
    if left is not None and left <= 0:
        gave_up = ServerUnavailable(f"{what}: gave up at the deadline, the server is unavailable ({exc})")
        gave_up.action_id = action_id
        raise gave_up from exc
    delay = backoff(attempt, getattr(exc, "retry_after", None))
    return delay if left is None else min(delay, left)

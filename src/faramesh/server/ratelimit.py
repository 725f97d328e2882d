"""Per-key request rate limiting: a token bucket for each API key, in memory.

The limit is checked after the key is identified, so requests with no key or a bad
key never allocate a bucket (they are refused with 401 before reaching here), and the
number of buckets is bounded by the number of valid keys. Buckets live in this
process; with several server replicas each one enforces the limit on its own.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_UNITS = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hour", "hours"), 3600.0),
}
_RATE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*([a-z]+)\s*$")  # ASCII digits only
OFF = ("", "0", "off", "none", "unlimited")


@dataclass(frozen=True)
class Rate:
    """`requests` per `per_seconds`; the bucket holds at most `requests` tokens (the burst)."""

    requests: float
    per_seconds: float

    @property
    def per_second(self) -> float:
        return self.requests / self.per_seconds

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}.get(self.per_seconds, f"{self.per_seconds:g}s")
        return f"{self.requests:g}/{unit}"


def parse_rate(text: str | None) -> Rate | None:
    """'50/s', '600/m', '10000/h' -> Rate; 'off', '0' or empty -> None (no limit)."""
    if text is None:
        return None
    raw = str(text).strip().lower()
    if raw in OFF:
        return None
    match = _RATE_RE.match(raw)
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"rate limit must look like 50/s, 600/m or 10000/h, or be 'off' (got {text!r})")
    per = _UNITS[match.group(2)]
    requests = float(match.group(1))
    if requests <= 0:
        return None
    return Rate(requests, per)


class RateLimiter:
    """Token buckets keyed by API key id. `check` is the whole interface."""

    def __init__(self, rate: Rate, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        # key id -> (tokens left, time of last refill)
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, key_id: str) -> float | None:
        """Take one token for `key_id`: None if the request may go ahead, else the
        seconds to wait before the next token is there (for Retry-After)."""
        capacity = self.rate.requests
        refill = self.rate.per_second
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * refill)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return None
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / refill

    def forget(self, key_id: str) -> None:
        """Drop a key's bucket (e.g. when the key is revoked)."""
        with self._lock:
            self._buckets.pop(key_id, None)


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that obeys it succeeds."""
    return str(max(1, math.ceil(seconds)))

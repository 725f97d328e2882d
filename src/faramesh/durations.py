"""Durations, read and written one way everywhere.

Read: policies (`approval.timeout`, `rate_limit.per`), grants' `expires_in`, replay
windows and the server's settings (`--permit-ttl`, `FARAMESH_SESSION_LIFETIME`, …) all
take a number of seconds (``90``, ``"90"``, ``2.5``) or numbers with units (``500ms``,
``30s``, ``15m``, ``2h``, ``1d``, ``1w``, ``1h30m``). Written: reasons people read say
``30s``, ``5m``, ``2h``, ``1d``.
"""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# A plain number of seconds, or numbers with units; "ms" is tried before "m".
_DURATION = re.compile(r"\d+(?:\.\d+)?|(?:\d+(?:\.\d+)?(?:ms|[smhdw]))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|[smhdw])")

DURATION_HINT = "use a number of seconds or a number with a unit ms, s, m, h, d or w, e.g. 30s, 15m, 2h, 1d, 1h30m"


class DurationError(ValueError):
    """Not a duration; `hint` says what is accepted."""

    def __init__(self, message: str, hint: str = DURATION_HINT) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def parse_duration(value: object) -> float:
    """Seconds, finite and above zero, from a number or a duration's text."""
    if isinstance(value, bool):
        raise DurationError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if not _DURATION.fullmatch(text):
            raise DurationError(f"invalid duration {value!r}")
        parts = _DURATION_PART.findall(text)
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts) if parts else float(text)
    else:
        raise DurationError(f"expected a duration, got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise DurationError(f"a duration must be positive, got {value!r}")
    return seconds


def humanize(seconds: float) -> str:
    """30s, 5m, 2h, 1d: the largest whole unit, else seconds."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    # Never an exponent ("1e+06s"): whole seconds as such, else at most microseconds.
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"

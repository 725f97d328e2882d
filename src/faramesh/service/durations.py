"""How a duration is written in a reason people read: 30s, 5m, 2h, 1d."""

from __future__ import annotations


def humanize(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"

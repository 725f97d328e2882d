"""Durations (``15m``, ``1h30m``) and ``during`` time windows.

Nothing here reads the clock: a window is checked against the ``now`` the
caller passes in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from faramesh import durations

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_GROUPS = {"weekdays": (0, 1, 2, 3, 4), "weekends": (5, 6), "weekend": (5, 6), "all": tuple(range(7))}
_CLOCK = re.compile(r"([01]?\d|2[0-4]):([0-5]\d)")


class TimingError(ValueError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def parse_duration(value: object) -> float:
    """Seconds from a duration (`faramesh.durations.parse_duration`), as a `TimingError`
    when it is not one."""
    try:
        return durations.parse_duration(value)
    except durations.DurationError as exc:
        raise TimingError(exc.message, exc.hint) from None


def _day(token: str) -> int:
    t = token.strip().lower()
    if t in DAY_NAMES:
        return DAY_NAMES.index(t)
    if t in _FULL_DAY_NAMES:
        return _FULL_DAY_NAMES.index(t)
    raise TimingError(f"unknown day {token!r}", "use mon, tue, wed, thu, fri, sat or sun")


def _day_spec(text: str) -> set[int]:
    days: set[int] = set()
    for part in text.split(","):
        part = part.strip().lower()
        if part in _DAY_GROUPS:
            days.update(_DAY_GROUPS[part])
        elif "-" in part:
            first, _, last = part.partition("-")
            start, end = _day(first), _day(last)
            # ranges may wrap around the week: fri-mon is fri, sat, sun, mon
            span = (end - start) % 7
            days.update((start + i) % 7 for i in range(span + 1))
        else:
            days.add(_day(part))
    return days


def parse_days(value: object) -> frozenset[int]:
    """Days of the week (0 = Monday) from ``"mon-fri"``, ``"sat,sun"``, ``"weekdays"`` or a list of those."""
    if isinstance(value, str):
        days = _day_spec(value)
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        days = set()
        for item in value:
            days |= _day_spec(item)
    else:
        raise TimingError(
            "days must be a string such as 'mon-fri' or a list of day names",
            "e.g. days: mon-fri, or days: [sat, sun]",
        )
    return frozenset(days)


def _minutes(text: str) -> int:
    m = _CLOCK.fullmatch(text.strip())
    if not m:
        raise TimingError(f"invalid time {text!r}", "use 24-hour HH:MM, e.g. 09:00-17:30")
    minutes = int(m.group(1)) * 60 + int(m.group(2))
    if minutes > 24 * 60:
        raise TimingError(f"invalid time {text!r}", "use 24-hour HH:MM between 00:00 and 24:00")
    return minutes


def parse_hours(value: object) -> tuple[int, int]:
    """``"09:00-17:00"`` to minutes since midnight ``(540, 1020)``; the end is exclusive.

    A start after the end (``22:00-06:00``) is an overnight window.
    """
    if not isinstance(value, str) or value.count("-") != 1:
        raise TimingError(f"hours must be a string 'HH:MM-HH:MM', got {value!r}", "e.g. hours: 09:00-17:00")
    first, last = value.split("-")
    start, end = _minutes(first), _minutes(last)
    if start == 24 * 60:
        raise TimingError("a window cannot start at 24:00", "start at 00:00 instead")
    if start == end:
        raise TimingError(f"the window {value!r} is empty", "use 00:00-24:00 for the whole day")
    return start, end


def parse_tz(value: object) -> ZoneInfo:
    if not isinstance(value, str) or not value:
        raise TimingError(f"tz must be a time zone name, got {value!r}", "e.g. tz: Europe/Berlin or tz: UTC")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimingError(f"unknown time zone {value!r}", "use an IANA name such as Europe/Berlin") from exc


@dataclass(frozen=True, slots=True)
class Window:
    """Days of the week and a time-of-day range in one time zone.

    Days and hours are both checked on the local date and time of ``now``.
    """

    days: frozenset[int]
    start: int
    end: int
    tz: tzinfo
    tz_name: str

    def contains(self, now: datetime) -> bool:
        if now.tzinfo is None:  # a naive time is taken to be UTC
            now = now.replace(tzinfo=UTC)
        try:
            local = now.astimezone(self.tz)
        except (OverflowError, ValueError):
            return False
        if local.weekday() not in self.days:
            return False
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def to_dict(self) -> dict[str, object]:
        return {
            "days": [DAY_NAMES[d] for d in sorted(self.days)],
            "hours": f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}",
            "tz": self.tz_name,
        }

"""Checks applied to everything an agent submits, whatever door it came through."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from pydantic import BeforeValidator

from faramesh.errors import InvalidInput

NAME_RE = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")
_DIGITS_RE = re.compile(r"[0-9]{1,30}")
MAX_INT64 = 2**63 - 1  # sequence numbers and cursors are stored as 64-bit integers
NUL = "\x00"
MAX_DEPTH = 32
MAX_AGENT_ID = 200
SHOWN = 60  # characters of a bad value or key echoed back in an error message


def shown(text: str) -> str:
    """A value as quoted in an error: cut short, so a huge input is not echoed back whole."""
    return repr(text if len(text) <= SHOWN else text[:SHOWN] + "…")


def parse_ascii_int(text: str | bytes | None, *, maximum: int | None = MAX_INT64) -> int | None:
    """The one parser for numbers that arrive in requests: ASCII digits only, 0..maximum.

    None for anything else, and the caller decides whether that is an error. `int()`
    alone is too lenient (it takes "١٢", " 12", "1_2", "+1") and `str.isdigit()` says yes
    to "²", which `int()` then refuses with an exception.
    """
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if not text or not _DIGITS_RE.fullmatch(text):
        return None
    value = int(text)
    return value if maximum is None or value <= maximum else None


def _ascii_int_param(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    parsed = parse_ascii_int(value, maximum=None if len(value) <= 30 else 0)
    if parsed is None:
        raise ValueError("must be a whole number written with the digits 0-9")
    return parsed


# Marks a query integer to be read by `parse_ascii_int` (FastAPI's own parsing takes
# " 1_0"). Put bounds before it, as in Annotated[int, Field(ge=1), ASCII_DIGITS], so
# they stay in the OpenAPI schema.
ASCII_DIGITS = BeforeValidator(_ascii_int_param)


def refuse_nul(value: Any, field: str) -> None:
    """The rule for NUL (U+0000), the same on every database: no string a client sends may
    hold it (PostgreSQL text cannot store it). Walks JSON values; keys count too."""
    if isinstance(value, str):
        if NUL in value:
            raise InvalidInput(f"{field} must not contain the NUL character (\\u0000)", field=field)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and NUL in key:
                where = field or "body"
                raise InvalidInput(f"{where} has a key with the NUL character (\\u0000)", field=where)
            refuse_nul(item, f"{field}.{key}" if field else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            refuse_nul(item, f"{field}[{i}]")


def normalize_name(value: Any, field: str) -> str:
    """NFKC-normalise a tool/operation name and insist on a plain ASCII shape.

    Full-width forms fold to ASCII; zero-width characters, spaces, controls and
    look-alike letters from other scripts are refused rather than guessed at, so a
    disguised name can never slip past a deny rule.
    """
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    normalized = unicodedata.normalize("NFKC", value)
    if not NAME_RE.fullmatch(normalized):
        if not normalized:
            raise InvalidInput(f"{field} must not be empty", field=field)
        raise InvalidInput(
            f"{field} must be 1-128 characters from A-Z a-z 0-9 _ . : / - (got {shown(value)})", field=field
        )
    return normalized


def check_agent_id(value: Any, field: str = "agent_id") -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if not value.strip() or len(value) > MAX_AGENT_ID or not printable(value):
        raise InvalidInput(f"{field} must be 1-{MAX_AGENT_ID} printable characters", field=field)
    return value


def printable(value: str) -> bool:
    """No control, format, surrogate, private-use or unassigned character (category C).
    `str.isprintable()` refuses all of those (and separators other than ' ', which are
    allowed here), so when it says yes there is no need to look up each character's
    category: nearly every agent id, on every submit."""
    if value.isprintable():
        return True
    return not any(unicodedata.category(c)[0] == "C" for c in value)


def check_json_object(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be a JSON object", field=field)
    _check_value(value, field, 0)
    return value


def _check_value(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{path} is nested more than {MAX_DEPTH} levels deep", field=path)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{path} has a non-string key", field=path)
            if NUL in key:
                raise InvalidInput(f"{path} has a key with the NUL character (\\u0000)", field=path)
            _check_value(item, f"{path}.{key if len(key) <= SHOWN else key[:SHOWN] + '…'}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, f"{path}[{i}]", depth + 1)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{path} must be a finite number (NaN and Infinity are not JSON)", field=path)
    elif isinstance(value, str):
        if NUL in value:
            raise InvalidInput(f"{path} must not contain the NUL character (\\u0000)", field=path)
    elif value is None or isinstance(value, (int, bool)):
        return
    else:
        raise InvalidInput(f"{path} holds a {type(value).__name__}, which is not a JSON value", field=path)

"""Checks applied to everything an agent submits, whatever door it came through."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from faramesh.errors import InvalidInput

NAME_RE = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")
MAX_DEPTH = 32
MAX_AGENT_ID = 200
SHOWN = 60  # characters of a bad value or key echoed back in an error message


def shown(text: str) -> str:
    """A value as quoted in an error: cut short, so a huge input is not echoed back whole."""
    return repr(text if len(text) <= SHOWN else text[:SHOWN] + "…")


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
        raise InvalidInput(f"{field} must be 1-128 characters from A-Z a-z 0-9 _ . : / - (got {shown(value)})", field=field)
    return normalized


def check_agent_id(value: Any, field: str = "agent_id") -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if not value.strip() or len(value) > MAX_AGENT_ID or any(unicodedata.category(c)[0] == "C" for c in value):
        raise InvalidInput(f"{field} must be 1-{MAX_AGENT_ID} printable characters", field=field)
    return value


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
            _check_value(item, f"{path}.{key if len(key) <= SHOWN else key[:SHOWN] + '…'}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, f"{path}[{i}]", depth + 1)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{path} must be a finite number (NaN and Infinity are not JSON)", field=path)
    elif value is None or isinstance(value, (str, int, bool)):
        return
    else:
        raise InvalidInput(f"{path} holds a {type(value).__name__}, which is not a JSON value", field=path)

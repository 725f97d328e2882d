"""Canonical JSON: one byte string per value, so that hashes can be recomputed anywhere.

Sorted keys, no whitespace, UTF-8 with non-ASCII kept raw, integral floats written as
integers (1.0 -> 1), other floats in positional notation without trailing zeros, and
NaN/Infinity refused. The same value always encodes to the same bytes.

`canonical_json` is the reference encoder. `fast_canonical` gives the same bytes
through orjson (several times faster on large values) and falls back to the reference
wherever orjson cannot be trusted to agree. `canonical_str` and `canonical_number`
encode single scalars, for callers that build a known record layout by concatenation.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from decimal import Decimal
from typing import Any

import orjson


class NonCanonicalValue(ValueError):
    pass


def _number(value: float) -> str:
    if value.is_integer():  # False for NaN and the infinities
        return str(int(value))
    text = repr(value)  # shortest round-trip digits: never a trailing zero
    if "e" in text or "n" in text:  # an exponent, or nan / inf
        if not math.isfinite(value):
            raise NonCanonicalValue("NaN and Infinity have no canonical form")
        text = format(Decimal(text), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    return text


def canonical_str(value: str | None) -> str:
    """The canonical JSON text of a string (or of None: null)."""
    if value is None:
        return "null"
    # Printable ASCII without quote or backslash needs no escaping (ids, event names).
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return '"' + value + '"'
    return json.dumps(value, ensure_ascii=False)


def canonical_number(value: float | int) -> str:
    """The canonical JSON text of a number; anything else is encoded (or refused) by the reference."""
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is float:
        return _number(value)
    return canonical_json(value).decode("utf-8")


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(canonical_str(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, dict):
        _encode_object(value, out)
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise NonCanonicalValue(f"{type(value).__name__} is not a JSON value")


def _encode_object(value: dict[Any, Any], out: list[str]) -> None:
    out.append("{")
    first = True
    for key in sorted(value):
        if not isinstance(key, str):
            raise NonCanonicalValue("object keys must be strings")
        if not first:
            out.append(",")
        first = False
        out.append(canonical_str(key))
        out.append(":")
        _encode(value[key], out)
    out.append("}")


def canonical_json(value: Any) -> bytes:
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


# -- the fast path -----------------------------------------------------------------

# orjson writes floats with the same shortest round-trip digits as the canonical form;
# they differ only where orjson adds ".0" to an integral float or uses an exponent
# ("e+16", "e-7"; hex digits in hashes never precede a sign). A string that happens
# to match only costs the slower, exact path.
_NON_CANONICAL_FLOAT = re.compile(rb"[0-9](?:\.0(?![0-9])|e[-+])")
_ORJSON_STRICT = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_PLAIN = frozenset({str, int, bool, type(None)})


def _with_canonical_floats(value: Any) -> Any:
    """A copy of a JSON value whose floats are pre-encoded in canonical form."""
    kind = type(value)
    if kind is float:
        return orjson.Fragment(_number(value))
    if kind is dict:
        return {k: v if type(v) in _PLAIN else _with_canonical_floats(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) in _PLAIN else _with_canonical_floats(v) for v in value]
    if kind in _PLAIN:
        return value
    raise TypeError(f"{kind.__name__} is not a JSON value")


def fast_canonical(value: Any, *, may_hold_nan: bool = True) -> bytes:
    """`canonical_json(value)`, through orjson.

    orjson escapes strings exactly as the canonical form does, sorts keys in the same
    (code point) order and writes floats with the same digits; where its float text
    may differ (an integral float, an exponent) or hide a NaN (written as null), the
    floats are first given canonical fragments. Integers beyond 64 bits and anything
    that is not plain JSON take the reference encoder (which refuses NaN and infinities).
    A value parsed from JSON text cannot hold a NaN, so for one (`may_hold_nan=False`)
    a null in the output is a real null and needs no second pass.
    """
    try:
        out = orjson.dumps(value, option=_ORJSON_STRICT)
        if (may_hold_nan and b"null" in out) or _NON_CANONICAL_FLOAT.search(out):
            out = orjson.dumps(_with_canonical_floats(value), option=_ORJSON_STRICT)
    except (TypeError, ValueError):
        return canonical_json(value)
    return out


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request_hash(*, agent_id: str | None, tool: str, operation: str, params: Any, context: Any) -> str:
    """Digest of exactly what an agent asked to do; approvals are bound to it."""
    return sha256_hex(
        fast_canonical(
            {
                "agent_id": agent_id,
                "tool": tool,
                "operation": operation,
                "params": params,
                "context": context,
            }
        )
    )

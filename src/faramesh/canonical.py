"""Canonical JSON: one byte string per value, so that hashes can be recomputed anywhere.

Sorted keys, no whitespace, UTF-8 with non-ASCII kept raw, integral floats written as
integers (1.0 -> 1), other floats in positional notation without trailing zeros, and
NaN/Infinity refused. The same value always encodes to the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal
from typing import Any


class NonCanonicalValue(ValueError):
    pass


def _number(value: float) -> str:
    if not math.isfinite(value):
        raise NonCanonicalValue("NaN and Infinity have no canonical form")
    if value.is_integer():
        return str(int(value))
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key in sorted(value):
            if not isinstance(key, str):
                raise NonCanonicalValue("object keys must be strings")
            if not first:
                out.append(",")
            first = False
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise NonCanonicalValue(f"{type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request_hash(*, agent_id: str | None, tool: str, operation: str, params: Any, context: Any) -> str:
    """Digest of exactly what an agent asked to do; approvals are bound to it."""
    return sha256_hex(
        canonical_json(
            {
                "agent_id": agent_id,
                "tool": tool,
                "operation": operation,
                "params": params,
                "context": context,
            }
        )
    )

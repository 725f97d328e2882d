"""Strict JSON: the numbers and keys a policy judges are exactly the ones that were sent.

Every JSON reader that feeds a policy decision (the REST API, the OpenAI Agents tool
wrapper, the CLI's ``--params``) applies the same three rules on top of plain JSON:

- an object must not repeat a key: parsers disagree on which copy wins, so
  ``{"amount": 500, "amount": 5}`` could be judged on one value and run with the other;
- an integer must fit in 64 bits (-2**63 .. 2**64-1): beyond that the fast parser
  rounds it to the nearest float;
- a decimal number must be exactly the shortest decimal form of the double it reads
  as: ``100.000000000000001`` reads as ``100.0``, so ``amount_lte: 100`` would allow it
  although the number sent is above 100. ``0.1``, ``19.99``, ``1e-7`` and ``100.50``
  are fine; more digits than a double holds are refused rather than rounded.

Comparisons in the policy are then exact: two accepted numbers compare as floats exactly
as their decimal texts compare.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

MIN_INT = -(2**63)
MAX_INT = 2**64 - 1
_SHOWN = 30


class InexactJSON(ValueError):
    """The text is JSON, but reading it would change a key or a number."""


def _cut(literal: str) -> str:
    return literal[:_SHOWN] + ("…" if len(literal) > _SHOWN else "")


def exact_int(literal: str) -> int:
    value = int(literal)
    if not MIN_INT <= value <= MAX_INT:
        raise InexactJSON(f"integer {_cut(literal)} is outside the 64-bit range; send it as a string")
    return value


def exact_float(literal: str) -> float:
    """The float a decimal literal denotes, refusing a literal that a double cannot hold as written."""
    value = float(literal)
    if not math.isfinite(value):
        raise InexactJSON(f"number {_cut(literal)} is too large for a double; send it as a string")
    if not reads_exactly(literal, value):
        raise InexactJSON(
            f"number {_cut(literal)} cannot be compared exactly (it would be read as {value!r}); "
            "send at most 17 significant digits, or send it as a string"
        )
    return value


def reads_exactly(literal: str, value: float) -> bool:
    """Does a finite float ``value`` mean exactly the decimal ``literal`` it was read from?"""
    try:
        return not math.isfinite(value) or Decimal(literal.replace("_", "")) == Decimal(repr(value))
    except ArithmeticError:  # not a plain decimal (e.g. ".inf"): nothing to compare
        return True


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InexactJSON(f"duplicate key {key[:60]!r} in an object")
        out[key] = value
    return out


def _refuse_constant(name: str) -> Any:
    raise InexactJSON(f"{name} is not a JSON number")


def loads(text: str | bytes) -> Any:
    """Parse JSON with the rules above; raises :class:`ValueError` (InexactJSON or JSONDecodeError)."""
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_int=exact_int,
            parse_float=exact_float,
            parse_constant=_refuse_constant,
        )
    except RecursionError:
        raise InexactJSON("nesting is too deep") from None


def strictness_problem(body: bytes) -> str | None:
    """Why a body that a fast parser accepted must still be refused, or None."""
    try:
        loads(body)
    except ValueError as exc:
        return str(exc)
    return None

"""Field paths and value checks shared by conditions and limits.

A field path names a value in one of three mappings: ``params`` (the tool's
arguments), ``context`` (what the caller says about the call) or ``agent``
(who the service says is calling). A bare name (``amount``) or a bare dotted
name (``customer.tier``) is in ``params``. A purely numeric segment also
indexes into a list (``params.items.0.sku``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

ROOTS: Final = ("params", "context", "agent")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def is_number(value: object) -> bool:
    """True for a finite int or float; bool, NaN, infinities and numeric strings are not numbers."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A parsed path such as ``params.customer.tier``."""

    root: str
    segments: tuple[str, ...]

    @property
    def text(self) -> str:
        return ".".join((self.root, *self.segments))

    @property
    def root_index(self) -> int:
        return ROOTS.index(self.root)

    def steps(self) -> tuple[tuple[str, int], ...]:
        """Each segment with its list index (-1 when the segment is not a non-negative integer)."""
        return tuple((s, int(s) if s.isascii() and s.isdigit() else -1) for s in self.segments)

    def resolve(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        agent: Mapping[str, Any] | None = None,
    ) -> Any:
        """The value at this path, or :data:`MISSING` when absent, ``None`` or unreachable."""
        root = {"params": params, "context": context, "agent": agent}[self.root]
        return lookup(root, self.steps())


def parse_path(text: str) -> FieldPath | None:
    """Parse a field path; None when it has an empty segment."""
    parts = text.split(".")
    if any(not p for p in parts):
        return None
    if len(parts) > 1 and parts[0] in ROOTS:
        return FieldPath(parts[0], tuple(parts[1:]))
    return FieldPath("params", tuple(parts))


def lookup(root: object, steps: tuple[tuple[str, int], ...]) -> Any:
    """Walk ``steps`` from ``root``; :data:`MISSING` when any step is absent or the value is None."""
    cur: Any = root
    for seg, index in steps:
        if isinstance(cur, Mapping):
            cur = cur.get(seg, MISSING)
            if cur is MISSING:
                return MISSING
        elif index >= 0 and isinstance(cur, list | tuple):
            if index >= len(cur):
                return MISSING
            cur = cur[index]
        else:
            return MISSING
    return MISSING if cur is None else cur

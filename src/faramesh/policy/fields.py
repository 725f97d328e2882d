"""Which fields a rule's conditions read, from its normalised `match` spec.

The dashboard shows these params first (they are why the action is held), and a
standing grant's conditions are checked to read params only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def condition_fields(match: Mapping[str, Any]) -> tuple[str, ...]:
    """The field paths (``params.amount``, ``context.env``) the conditions read, in order, once each."""
    seen: dict[str, None] = {}
    _walk(match.get("where") or (), seen)
    return tuple(seen)


def _walk(nodes: Any, seen: dict[str, None]) -> None:
    if isinstance(nodes, Mapping):
        nodes = [nodes]
    if not isinstance(nodes, (list, tuple)):
        return
    for node in nodes:
        if not isinstance(node, Mapping):
            continue
        field = node.get("field")
        if isinstance(field, str):
            seen.setdefault(field, None)
        for key in ("where", "all", "any", "not"):
            if key in node:
                _walk(node[key], seen)

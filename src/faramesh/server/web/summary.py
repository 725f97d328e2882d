"""How an action reads in a queue row: its arguments that matter, compactly, and whether
its agent is still waiting. Plain text only; the templates escape it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from faramesh.policy import Policy
from faramesh.policy.fields import condition_fields
from faramesh.server.web.render import parse_iso, relative

MAX_ARGS = 4
MAX_VALUE = 40


@dataclass(frozen=True)
class Arg:
    name: str
    text: str  # shortened for the row
    full: str  # the whole value, for the title


_FIELDS_CACHE: dict[str, dict[str, tuple[str, ...]]] = {}


def rule_fields(policy: Policy) -> dict[str, tuple[str, ...]]:
    """For each rule of `policy`, the params fields its conditions test (why an action is held)."""
    cached = _FIELDS_CACHE.get(policy.hash)
    if cached is not None:
        return cached
    out = {}
    for rule in policy.rules:
        fields = condition_fields(rule.spec.get("match") or {})
        out[rule.id] = tuple(f.removeprefix("params.") for f in fields if f.startswith("params."))
    _FIELDS_CACHE.clear()  # only the active policy's are needed
    _FIELDS_CACHE[policy.hash] = out
    return out


def format_value(value: Any) -> str:
    """4321.5 → 4,321.50; 1200 → 1,200; strings as they are; anything else as compact JSON."""
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        text = f"{value:,.2f}"
        return text if float(text.replace(",", "")) == value else f"{value:,}"
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _clip(text: str, limit: int = MAX_VALUE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _lookup(params: Any, path: str) -> Any:
    cur = params
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


_MISSING = object()


def arg_summary(params: Any, fields: tuple[str, ...] = (), limit: int = MAX_ARGS) -> list[Arg]:
    """The params that matter: the fields the rule tests first, then the others in order."""
    if not isinstance(params, dict):
        return []
    names = list(dict.fromkeys([*fields, *params]))
    out: list[Arg] = []
    for name in names:
        value = _lookup(params, name)
        if value is _MISSING:
            continue
        full = format_value(value)
        out.append(Arg(_clip(name, 24), _clip(full), full))
        if len(out) >= limit:
            break
    return out


def args_line(args: list[Arg]) -> str:
    """`amount 4,321.50 · customer cus_123`: the row's summary as one line (its title)."""
    return " · ".join(f"{a.name} {a.full}" for a in args)


def presence_text(presence: Any, now: float | None = None) -> str | None:
    """ "agent is waiting", "agent stopped waiting 12m ago", or None when not known."""
    if not isinstance(presence, dict):
        return None
    if presence.get("agent_waiting"):
        return "agent is waiting"
    seen = parse_iso(presence.get("agent_seen_at"))
    if seen is None:
        return None
    return f"agent stopped waiting {relative((now or time.time()) - seen)} ago"

"""Random small policies, claims and inputs for the property tests of the policy tools."""

from __future__ import annotations

import itertools
from typing import Any

import yaml
from hypothesis import strategies as st

NUMBERS = (0, 5, 10)
STRINGS = ("prod", "dev")
FIELDS = ("a", "context.env")  # few fields, so that rules and claims meet on them
TOOLS = ("t1", "t2", "t*")


def _condition(field: str) -> st.SearchStrategy[dict[str, Any]]:
    number = st.sampled_from(NUMBERS)
    string = st.sampled_from(STRINGS)
    scalar = st.one_of(number, string, st.booleans())
    return st.one_of(
        st.builds(lambda op, n: {f"{field}_{op}": n}, st.sampled_from(("gt", "gte", "lt", "lte")), number),
        st.builds(lambda op, v: {f"{field}_{op}": v}, st.sampled_from(("eq", "ne")), scalar),
        st.builds(
            lambda op, vs: {f"{field}_{op}": vs},
            st.sampled_from(("in", "not_in")),
            st.lists(scalar, min_size=1, max_size=3),
        ),
        st.builds(lambda v: {f"{field}_exists": v}, st.booleans()),
        st.builds(lambda op, s: {f"{field}_{op}": s}, st.sampled_from(("startswith", "endswith")), string),
        st.builds(lambda v: {f"{field}_contains": v}, st.one_of(string, number)),
    )


def _conditions() -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.sampled_from(FIELDS).flatmap(_condition)
    single = st.one_of(
        leaf,
        st.builds(lambda m: {"not": m}, leaf),
        st.builds(lambda ms: {"any": ms}, st.lists(leaf, min_size=1, max_size=3)),
        st.builds(lambda ms: {"all": [ms[0], {"not": ms[1]}]}, st.lists(leaf, min_size=2, max_size=2)),
    )

    def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for part in parts:
            for key, value in part.items():
                out.setdefault(key, value)
        return out

    return st.lists(single, min_size=0, max_size=3).map(merge)


@st.composite
def policies(draw: st.DrawFn) -> str:
    rules = []
    for _ in range(draw(st.integers(1, 5))):
        match = draw(_conditions())
        if draw(st.booleans()):
            match["tool"] = draw(st.sampled_from(TOOLS))
        if draw(st.booleans()):
            match["operation"] = "o1"
        effect = draw(st.sampled_from(("allow", "deny", "require_approval")))
        rule: dict[str, Any] = {"match": match, effect: True}
        rules.append(rule)
    default = draw(st.sampled_from(("allow", "deny", "require_approval")))
    return yaml.safe_dump({"default": default, "rules": rules}, sort_keys=False)


@st.composite
def claims(draw: st.DrawFn) -> str:
    tests = []
    if draw(st.booleans()):
        tests.append("tool=" + draw(st.sampled_from(("t1", "t2", "t3", "t*"))))
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)):
        op = draw(st.sampled_from((">", ">=", "<", "<=", "=", "!=")))
        if op in ("=", "!="):
            value = draw(st.sampled_from(("5", "10", "prod", "true", "null")))
        else:
            value = draw(st.sampled_from(("0", "5", "10")))
        tests.append(f"{field}{op}{value}")
    effects = draw(st.sampled_from(("not allow", "deny", "allow", "not deny", "require_approval or deny")))
    return " ".join(tests) + " => " + effects


def values() -> list[Any]:
    """Every kind, and numbers on and around the policies' constants."""
    numbers = sorted({n + d for n in NUMBERS for d in (-0.5, 0, 0.5)})
    return [None, *numbers, *STRINGS, "prodx", "xdev", True, ["prod"], [5], {}, "5"]


def inputs() -> itertools.product[tuple[Any, ...]]:
    return itertools.product(("t1", "t2", "t3", "tx"), ("o1", "o2"), values(), (None, 5), values())


def build(tool: str, op: str, a: Any, b: Any, env: Any = None) -> dict[str, Any]:
    params = {k: v for k, v in (("a", a), ("b", b)) if v is not None}
    context = {"env": env} if env is not None else {}
    return {"tool": tool, "operation": op, "params": params, "context": context}

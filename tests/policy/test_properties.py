"""Property tests: the compiled evaluator agrees with a direct reading of the rules, whatever the input.

The reference below interprets the policy's raw YAML data rule by rule, in
file order, without the index, the closures or any caching. Random policies
and hostile inputs (bools, NaN, infinities, numeric strings, bytes, nested
containers, odd Unicode names) must give the same decision from both.
"""

from __future__ import annotations

import fnmatch
import math
import unicodedata
from collections.abc import Mapping
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faramesh.policy import Effect, Policy

OPS = ("startswith", "endswith", "contains", "matches", "not_in", "exists", "gte", "lte", "gt", "lt", "eq", "ne", "in")
UNKNOWN = None  # the third truth value

# -- reference interpretation ---------------------------------------------------------------------------------


def ref_norm(name: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def ref_names(patterns: Any, name: str) -> bool:
    patterns = patterns if isinstance(patterns, list) else [patterns]
    return any(fnmatch.fnmatchcase(ref_norm(name), ref_norm(p)) for p in patterns)


MISSING = object()


def ref_get(env: dict[str, Any], field: str) -> Any:
    parts = field.split(".")
    if len(parts) > 1 and parts[0] in ("params", "context", "agent"):
        cur: Any = env[parts[0]]
        parts = parts[1:]
    else:
        cur = env["params"]
    for part in parts:
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list | tuple) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return MISSING
    return MISSING if cur is None else cur


def ref_kind(v: Any) -> str | None:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "str"
    if type(v) is int or (type(v) is float and math.isfinite(v)):
        return "num"
    return None


def ref_condition(field: str, op: str, operand: Any, env: dict[str, Any]) -> bool | None:
    v = ref_get(env, field)
    if op == "exists":
        return (v is not MISSING) == operand
    if v is MISSING:
        return UNKNOWN
    if op in ("gt", "gte", "lt", "lte"):
        if ref_kind(v) != "num":
            return UNKNOWN
        return {"gt": v > operand, "gte": v >= operand, "lt": v < operand, "lte": v <= operand}[op]
    if op in ("eq", "ne"):
        if ref_kind(v) != ref_kind(operand):
            return UNKNOWN
        return (v == operand) if op == "eq" else (v != operand)
    if op in ("in", "not_in"):
        kinds = {ref_kind(x) for x in operand}
        if ref_kind(v) is None or ref_kind(v) not in kinds:
            return UNKNOWN
        found = any(ref_kind(x) == ref_kind(v) and x == v for x in operand)
        return found if op == "in" else not found
    if op == "contains":
        if isinstance(v, str):
            return (operand in v) if isinstance(operand, str) else UNKNOWN
        if isinstance(v, list | tuple):
            return any(ref_kind(x) == ref_kind(operand) and x == operand for x in v)
        return UNKNOWN
    if not isinstance(v, str):
        return UNKNOWN
    if op == "startswith":
        return v.startswith(operand)
    if op == "endswith":
        return v.endswith(operand)
    assert op == "matches"
    import re

    return re.fullmatch(operand, v) is not None


def ref_and(results: list[bool | None]) -> bool | None:
    if any(r is False for r in results):
        return False
    if any(r is UNKNOWN for r in results):
        return UNKNOWN
    return True


def ref_match(match: Mapping[str, Any], env: dict[str, Any]) -> bool | None:
    results: list[bool | None] = []
    for key, value in match.items():
        if key == "tool":
            results.append(ref_names(value, env["tool"]))
        elif key in ("operation", "op"):
            results.append(ref_names(value, env["operation"]))
        elif key == "all":
            results.append(ref_and([ref_match(m, env) for m in value]))
        elif key == "any":
            parts = [ref_match(m, env) for m in value]
            results.append(True if True in parts else (UNKNOWN if UNKNOWN in parts else False))
        elif key == "not":
            inner = ref_match(value, env)
            results.append(UNKNOWN if inner is UNKNOWN else not inner)
        else:
            op = next(op for op in OPS if key.endswith("_" + op))
            results.append(ref_condition(key[: -len(op) - 1], op, value, env))
    return ref_and(results)


def ref_evaluate(data: Mapping[str, Any], env: dict[str, Any]) -> tuple[str, str | None]:
    for i, rule in enumerate(data["rules"]):
        if ref_match(rule.get("match", {}), env) is True:
            effect = next(e for e in ("allow", "deny", "require_approval") if rule.get(e) is True)
            return effect, rule.get("id", f"rules[{i}]")
    return data.get("default", "deny"), None


# -- strategies ---------------------------------------------------------------------------------------------

FIELDS = [
    "amount",
    "params.amount",
    "tier",
    "customer.tier",
    "tags",
    "items.0",
    "context.env",
    "agent.id",
    "agent.groups",
]
NAME_PATTERNS = ["refund", "shell", "db.query", "db.*", "*", "re?und", "sh*l", "user_management"]
OP_PATTERNS = ["process", "run", "delete", "p*", "?un"]
WORDS = ["gold", "silver", "Gold", "prod", "dev", "a", "", "150", "ls", "1", "true"]
REGEXES = ["[a-z]+", "g.*", r"\d+", "gold|silver", "ls( -[a-z]+)*"]

finite_numbers = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
scalars = st.one_of(st.sampled_from(WORDS), finite_numbers, st.booleans())


def operand_for(op: str) -> st.SearchStrategy[Any]:
    if op in ("gt", "gte", "lt", "lte"):
        return finite_numbers
    if op in ("eq", "ne", "contains"):
        return scalars
    if op in ("in", "not_in"):
        return st.lists(scalars, min_size=1, max_size=4)
    if op in ("startswith", "endswith"):
        return st.sampled_from(WORDS)
    if op == "matches":
        return st.sampled_from(REGEXES)
    return st.booleans()


@st.composite
def condition(draw: st.DrawFn) -> tuple[str, Any]:
    op = draw(st.sampled_from(OPS))
    return f"{draw(st.sampled_from(FIELDS))}_{op}", draw(operand_for(op))


def match_maps(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any] = dict(draw(st.lists(condition(), min_size=0 if depth == 0 else 1, max_size=3)))
        if draw(st.booleans()):
            out["tool"] = draw(
                st.sampled_from(NAME_PATTERNS) | st.lists(st.sampled_from(NAME_PATTERNS), min_size=1, max_size=3)
            )
        if draw(st.integers(0, 3)) == 0:
            out["operation" if draw(st.booleans()) else "op"] = draw(st.sampled_from(OP_PATTERNS))
        if depth < 2 and draw(st.integers(0, 3)) == 0:
            kind = draw(st.sampled_from(["any", "all", "not"]))
            if kind == "not":
                out["not"] = draw(match_maps(depth + 1))
            else:
                out[kind] = draw(st.lists(match_maps(depth + 1), min_size=1, max_size=3))
        return out

    return build()


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    rules = []
    for i in range(draw(st.integers(0, 6))):
        rule: dict[str, Any] = {draw(st.sampled_from(["allow", "deny", "require_approval"])): True}
        if draw(st.integers(0, 5)):
            rule["match"] = draw(match_maps(0))
        if draw(st.booleans()):
            rule["id"] = f"r{i}"
        rules.append(rule)
    return {"default": draw(st.sampled_from(["allow", "deny", "require_approval"])), "rules": rules}


class Opaque:
    """An object a policy knows nothing about."""


hostile_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**20, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=6),
    st.binary(max_size=4),
    st.builds(Opaque),
    st.sampled_from([(), (1, "gold"), frozenset({"gold"})]),
)
hostile = st.recursive(
    hostile_leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["tier", "0", "x"]), children, max_size=3)
    ),
    max_leaves=8,
)
param_maps = st.dictionaries(st.sampled_from(["amount", "tier", "customer", "tags", "items", "x"]), hostile, max_size=5)
names = st.sampled_from(
    [
        "refund",
        "REFUND",
        "ｒｅｆｕｎｄ",
        "shell",
        "ſhell",
        "SH_L",
        "db.query",
        "DB.Query",
        "db.",
        "user_management",
        "re_und",
        " refund",
        "refund\n",
        "process",
        "run",
        "delete",
        "Run",
        "pun",
        "p",
    ]
) | st.text(max_size=8)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=policies(),
    tool=names,
    operation=names,
    params=st.one_of(param_maps, hostile),
    context=st.one_of(st.dictionaries(st.just("env"), hostile, max_size=1), hostile),
    agent=st.one_of(st.fixed_dictionaries({"id": hostile, "groups": hostile}), st.none()),
)
def test_evaluator_agrees_with_the_reference(
    data: dict[str, Any], tool: str, operation: str, params: Any, context: Any, agent: Any
) -> None:
    policy = Policy.from_yaml(yaml.safe_dump(data, allow_unicode=True))
    decision = policy.evaluate(tool=tool, operation=operation, params=params, context=context, agent=agent)
    env = {"params": params, "context": context, "agent": agent, "tool": tool, "operation": operation}
    effect, rule_id = ref_evaluate(data, env)
    assert (decision.effect.value, decision.rule_id) == (effect, rule_id)
    if decision.effect is Effect.ALLOW:
        assert effect == "allow"


non_numbers = hostile.filter(lambda v: not (type(v) is int or (type(v) is float and math.isfinite(v))))


@settings(max_examples=400, deadline=None)
@given(
    op=st.sampled_from(["gt", "gte", "lt", "lte"]),
    bound=finite_numbers,
    value=non_numbers,
    negate=st.integers(0, 2),
)
def test_numeric_conditions_never_match_non_numbers(op: str, bound: float, value: Any, negate: int) -> None:
    condition = f"amount_{op}: {bound!r}"
    for _ in range(negate):  # not: and not: not: must not turn "unknown" into a match either
        condition = f"not: {{{condition}}}"
    policy = Policy.from_yaml(f"default: deny\nrules:\n  - match: {{{condition}}}\n    allow: true\n")
    for params in ({"amount": value}, {}, None):
        d = policy.evaluate(tool="refund", operation="process", params=params, context={})
        assert d.effect is Effect.DENY and d.rule_id is None


@settings(max_examples=300, deadline=None)
@given(tool=st.text(max_size=20), operation=st.text(max_size=20), params=hostile, context=hostile, agent=hostile)
def test_evaluate_never_raises(tool: str, operation: str, params: Any, context: Any, agent: Any) -> None:
    policy = Policy.from_yaml(
        "rules:\n"
        "  - match: {tool: '*', any: [{amount_gt: 1}, {tier_in: [gold, 1, true]}, {tags_contains: x}]}\n"
        "    require_approval: true\n"
        "  - match: {not: {customer.tier_matches: '[a-z]+'}, context.env_ne: prod, agent.groups_contains: a}\n"
        "    allow: true\n"
    )
    d = policy.evaluate(tool=tool, operation=operation, params=params, context=context, agent=agent)
    assert d.effect in (Effect.ALLOW, Effect.DENY, Effect.REQUIRE_APPROVAL)


@settings(max_examples=500, deadline=None)
@given(
    pattern=st.text(alphabet="ab.*?", min_size=1, max_size=6),
    name=st.text(alphabet="abAB.c", max_size=8),
)
def test_name_globs_agree_with_fnmatch(pattern: str, name: str) -> None:
    policy = Policy.from_yaml(f"rules:\n  - match: {{tool: '{pattern}'}}\n    allow: true\n")
    matched = policy.evaluate(tool=name, operation="o", params={}, context={}).effect is Effect.ALLOW
    assert matched == fnmatch.fnmatchcase(name.lower(), pattern)

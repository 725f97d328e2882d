"""``match`` conditions compiled into closures with three-valued results.

Every condition evaluates to ``True``, ``False`` or ``None`` (unknown). A
condition is unknown when the data it needs is missing, ``None`` or of the
wrong type. Unknown propagates: ``not`` of unknown is unknown, ``all`` is false
if any part is false and otherwise unknown if any part is unknown, ``any`` is
true if any part is true and otherwise unknown if any part is unknown. A rule
matches only when its conditions are ``True``, so missing or malformed data
can never make a rule match, whether the rule allows or denies.

The evaluation environment is the tuple ``(params, context, agent, tool, operation)``
with ``tool`` and ``operation`` already normalised.

Each condition is compiled twice over the same closures: ``pred`` (fast, used
by every decision) and ``trace``, which also tells a :class:`ConditionRecorder`
each node's result. A traced node takes its result from its own ``pred``, so a
traced evaluation can never disagree with an untraced one; it only evaluates
every part (no short-circuit) so that each part's result can be shown.
Nodes are named by their YAML key path, e.g. ``rules[0].match.any[1].amount_gt``;
a mapping of several conditions (an implicit "all") is named by its key plus
:data:`CONJUNCTION`.
"""

from __future__ import annotations

import difflib
import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import PolicyProblem
from .names import PATTERN_CHARS, NameMatcher
from .parser import Loc, YMap, YNode, YScalar, YSeq, yaml11_hint
from .values import MISSING, ROOTS, FieldPath, is_number, lookup, parse_path

Env = tuple[Any, Any, Any, str, str]
Pred = Callable[[Env], bool | None]
CONJUNCTION = "&"


class ConditionRecorder(Protocol):
    """Told the result of every condition node of a traced rule, parts before the whole."""

    def condition(self, key: str, result: bool | None, value: Any) -> None:
        """``value`` is the field value (None: missing) or name a test saw; None for any/all/not."""


Traced = Callable[[Env, ConditionRecorder], bool | None]

TOOL_INDEX = 3
OPERATION_INDEX = 4

# Longest first, so that `x_not_in` parses as (x, not_in) and not as (x_not, in).
OPERATORS = (
    "startswith",
    "endswith",
    "contains",
    "matches",
    "not_in",
    "exists",
    "gte",
    "lte",
    "gt",
    "lt",
    "eq",
    "ne",
    "in",
)
COMBINATORS = ("any", "all", "not")
NAME_KEYS = ("tool", "operation", "op")
EFFECT_KEYS = ("allow", "deny", "require_approval")
RULE_KEYS = (
    "id",
    "match",
    *EFFECT_KEYS,
    "reason",
    "risk",
    "approval",
    "rate_limit",
    "budget",
    "during",
    "description",
)
MAX_REGEX_LENGTH = 1000

_COMPARE = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


class Reporter:
    """Collects problems and warnings while a policy is compiled."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[PolicyProblem] = []
        self.warnings: list[str] = []

    def error(self, loc: Loc, key: str, message: str, hint: str = "") -> None:
        self.problems.append(PolicyProblem(self.source, loc.line, loc.column, key, message, hint))

    def warn(self, loc: Loc, key: str, message: str) -> None:
        self.warnings.append(f"{self.source}:{loc.line}:{loc.column}: {key}: {message}")


def split_key(key: str) -> tuple[str, str] | None:
    """``amount_gt`` → ``("amount", "gt")``; None when no operator suffix fits."""
    for op in OPERATORS:
        suffix = "_" + op
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], op
    return None


def suggest_match_key(key: str) -> str | None:
    candidates = list(NAME_KEYS + COMBINATORS)
    for i, ch in enumerate(key):
        if ch == "_" and i > 0:
            field_name = key[:i]
            candidates.extend(f"{field_name}_{op}" for op in OPERATORS)
    found = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


def value_kind(value: object) -> str | None:
    """The comparison class of a value: ``bool``, ``num``, ``str`` or None for anything else."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "str"
    if is_number(value):
        return "num"
    return None


def canonical_scalar(value: Any) -> Any:
    """Integral floats become ints so that ``100`` and ``100.0`` hash alike."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass
class Compiled:
    """The result of compiling one match map."""

    pred: Pred | None  # None: always true
    spec: dict[str, Any]
    trace: Traced | None = None  # pred, telling a recorder each node's result
    tool: NameMatcher | None = None  # only for the rule's top-level match
    operation: NameMatcher | None = None


def _getter(path: FieldPath) -> Callable[[Env], Any]:
    """A fast accessor for a path; returns None when the value is absent."""
    index = path.root_index
    steps = path.steps()
    if len(steps) == 1:
        seg = steps[0][0]

        def get_one(env: Env) -> Any:
            root = env[index]
            if type(root) is dict:
                return root.get(seg)
            value = lookup(root, steps)
            return None if value is MISSING else value

        return get_one

    def get_many(env: Env) -> Any:
        value = lookup(env[index], steps)
        return None if value is MISSING else value

    return get_many


class MatchCompiler:
    def __init__(self, reporter: Reporter) -> None:
        self.r = reporter

    # -- entry points

    def compile(self, node: YNode, key: str, *, top: bool) -> Compiled | None:
        if not isinstance(node, YMap):
            self.r.error(node.loc, key, "must be a mapping of conditions", "e.g. match: {tool: refund, amount_gt: 100}")
            return None
        preds: list[Pred] = []
        traces: list[Traced] = []
        specs: list[Any] = []
        out = Compiled(None, {})
        ok = True
        if "operation" in node.entries and "op" in node.entries:
            self.r.error(
                node.key_loc("op"),
                f"{key}.op",
                "both operation and its alias op are given",
                "keep only one of them",
            )
            ok = False
        for name, name_loc, value in node:
            child = f"{key}.{name}"
            if name in NAME_KEYS:
                matcher = self._names(value, child)
                if matcher is None:
                    ok = False
                    continue
                slot = "tool" if name == "tool" else "operation"
                out.spec[slot] = list(matcher.patterns)
                if top:  # the rule's own tool/operation: the index and the rule loop use them directly
                    setattr(out, slot, matcher)
                else:
                    index = TOOL_INDEX if slot == "tool" else OPERATION_INDEX
                    preds.append(_name_pred(matcher, index))
                    traces.append(_traced_leaf(child, preds[-1], _slot(index)))
                continue
            if name in COMBINATORS:
                compiled = self._combinator(name, value, child)
            else:
                compiled = self._condition(name, name_loc, value, child)
            if compiled is None:
                ok = False
                continue
            pred, trace, spec = compiled
            preds.append(pred)
            traces.append(trace)
            specs.append(spec)
        if not ok:
            return None
        if specs:
            out.spec["where"] = sorted(specs, key=_sort_key)
        if preds:
            out.pred = _all(preds)
            out.trace = traces[0] if len(traces) == 1 else _traced_node(key + CONJUNCTION, out.pred, traces)
        return out

    # -- pieces

    def _names(self, node: YNode, key: str) -> NameMatcher | None:
        items: list[YNode]
        if isinstance(node, YSeq):
            items = node.items
            if not items:
                self.r.error(node.loc, key, "the list of names is empty", "give at least one name or remove the key")
                return None
        else:
            items = [node]
        patterns: list[str] = []
        ok = True
        for item in items:
            if not isinstance(item, YScalar) or not isinstance(item.value, str) or not item.value:
                shown = item.value if isinstance(item, YScalar) else "a collection"
                self.r.error(
                    item.loc,
                    key,
                    f"expected a name or glob string, got {shown!r}",
                    'quote it, e.g. tool: "refund" or tool: "stripe.*"',
                )
                ok = False
                continue
            if not PATTERN_CHARS.fullmatch(item.value):
                self.r.error(
                    item.loc,
                    key,
                    f"invalid name pattern {item.value!r}",
                    "use only letters, digits, _ . : / - and the globs * and ?",
                )
                ok = False
                continue
            patterns.append(item.value)
        return NameMatcher(patterns) if ok else None

    def _combinator(self, name: str, node: YNode, key: str) -> tuple[Pred, Traced, Any] | None:
        if name == "not":
            if not isinstance(node, YMap):
                self.r.error(node.loc, key, "not: takes a mapping of conditions", "e.g. not: {amount_gt: 100}")
                return None
            inner = self.compile(node, key, top=False)
            if inner is None:
                return None
            if inner.pred is None or inner.trace is None:
                self.r.error(node.loc, key, "not: of an empty mapping never matches", "add a condition")
                return None
            negated = _not(inner.pred)
            return negated, _traced_node(key, negated, [inner.trace]), {"not": inner.spec}
        if not isinstance(node, YSeq) or not node.items:
            self.r.error(
                node.loc,
                key,
                f"{name}: takes a non-empty list of condition mappings",
                f"e.g. {name}: [{{amount_gt: 100}}, {{context.env_eq: prod}}]",
            )
            return None
        preds: list[Pred] = []
        traces: list[Traced] = []
        specs: list[Any] = []
        ok = True
        for i, item in enumerate(node.items):
            inner = self.compile(item, f"{key}[{i}]", top=False)
            if inner is None:
                ok = False
                continue
            if inner.pred is None or inner.trace is None:
                self.r.error(
                    item.loc,
                    f"{key}[{i}]",
                    "an empty mapping in any/all is always true",
                    "add a condition or remove the item",
                )
                ok = False
                continue
            preds.append(inner.pred)
            traces.append(inner.trace)
            specs.append(inner.spec)
        if not ok:
            return None
        combined = _any(preds) if name == "any" else _all(preds)
        return combined, _traced_node(key, combined, traces), {name: specs}

    def _condition(self, name: str, loc: Loc, node: YNode, key: str) -> tuple[Pred, Traced, Any] | None:
        split = split_key(name)
        if split is None:
            self._unknown_key(name, loc, key)
            return None
        field_text, op = split
        path = parse_path(field_text)
        if path is None:
            self.r.error(loc, key, f"invalid field path {field_text!r}", "use dotted names such as customer.tier")
            return None
        first = field_text.split(".")[0]
        if first in NAME_KEYS:
            self.r.warn(
                loc,
                key,
                f"{name} tests params.{field_text}, not the action's {first} name; "
                f"to match the name write {first}: <name or list>",
            )
        get = _getter(path)
        built = self._operator(op, get, node, key)
        if built is None:
            return None
        pred, operand = built
        return pred, _traced_leaf(key, pred, get), {"field": path.text, "op": op, "value": operand}

    def _unknown_key(self, name: str, loc: Loc, key: str) -> None:
        if name in RULE_KEYS:
            self.r.error(
                loc,
                key,
                f"{name} is a rule setting, not a condition",
                f"move {name} out of match:, level with match:",
            )
            return
        if "_" not in name:
            close = difflib.get_close_matches(name, NAME_KEYS + COMBINATORS, n=1, cutoff=0.75)
            if close:
                self.r.error(loc, key, f"unknown condition {name!r}", f"did you mean {close[0]}?")
                return
        if "_" not in name and parse_path(name) is not None and name not in ROOTS:
            self.r.error(
                loc,
                key,
                f"unknown condition {name!r}: a field needs an operator",
                f"e.g. {name}_eq, {name}_gt, {name}_in or {name}_exists",
            )
            return
        suggestion = suggest_match_key(name)
        hint = (
            f"did you mean {suggestion}?"
            if suggestion
            else (
                "conditions are tool, operation, any, all, not or <field>_<op> with op one of " + ", ".join(OPERATORS)
            )
        )
        self.r.error(loc, key, f"unknown condition {name!r}", hint)

    def _operator(self, op: str, get: Callable[[Env], Any], node: YNode, key: str) -> tuple[Pred, Any] | None:
        value = node.value if isinstance(node, YScalar) else None
        if op in _COMPARE:
            if not isinstance(node, YScalar) or not is_number(value):
                hint = yaml11_hint(value, "number") or f"write it without quotes, e.g. {key.rsplit('.', 1)[-1]}: 100"
                self._bad(node, key, "a number", hint)
                return None
            return _compare(get, _COMPARE[op], value), canonical_scalar(value)
        if op in ("eq", "ne", "contains"):
            kind = value_kind(value) if isinstance(node, YScalar) else None
            if kind is None:
                what = "a string, number or boolean"
                hint = (
                    "to test for a missing field use <field>_exists: false"
                    if value is None and isinstance(node, YScalar)
                    else "compare against one value; use _in for a list"
                )
                self._bad(node, key, what, hint)
                return None
            if op == "contains":
                return _contains(get, value, kind), canonical_scalar(value)
            return _equals(get, value, kind, op == "ne"), canonical_scalar(value)
        if op in ("in", "not_in"):
            return self._membership(op, get, node, key)
        if op in ("startswith", "endswith"):
            if not isinstance(value, str):
                self._bad(node, key, "a string", 'e.g. "prod-"')
                return None
            return _affix(get, value, op == "startswith"), value
        if op == "matches":
            return self._regex(get, node, key)
        # exists
        if not isinstance(value, bool):
            self._bad(node, key, "true or false", yaml11_hint(value, "bool") or "e.g. approved_by_exists: true")
            return None
        return _exists(get, value), value

    def _membership(self, op: str, get: Callable[[Env], Any], node: YNode, key: str) -> tuple[Pred, Any] | None:
        if not isinstance(node, YSeq) or not node.items:
            if isinstance(node, YSeq):
                self.r.error(
                    node.loc,
                    key,
                    "the list is empty, so the condition could never be true",
                    "list at least one value",
                )
            else:
                self._bad(node, key, "a list", "e.g. [gold, platinum]")
            return None
        groups: dict[str, set[Any]] = {}
        listed: list[Any] = []
        ok = True
        for item in node.items:
            kind = value_kind(item.value) if isinstance(item, YScalar) else None
            if kind is None:
                self._bad(item, key, "a string, number or boolean list item", "remove nested lists, maps and nulls")
                ok = False
                continue
            assert isinstance(item, YScalar)
            groups.setdefault(kind, set()).add(item.value)
            listed.append(canonical_scalar(item.value))
        if not ok:
            return None
        frozen = {k: frozenset(v) for k, v in groups.items()}
        # Deduplicate by kind and value: a plain set would merge 1 and True (equal in Python),
        # giving two policies that decide differently the same hash.
        unique = {(type(v).__name__, v): v for v in listed}
        spec = sorted(unique.values(), key=lambda v: (type(v).__name__, str(v)))
        return _member(get, frozen, op == "not_in"), spec

    def _regex(self, get: Callable[[Env], Any], node: YNode, key: str) -> tuple[Pred, Any] | None:
        value = node.value if isinstance(node, YScalar) else None
        if not isinstance(value, str):
            self._bad(node, key, "a regular expression string", "quote it, e.g. '[a-z]+'")
            return None
        if len(value) > MAX_REGEX_LENGTH:
            self.r.error(
                node.loc,
                key,
                f"the regular expression is {len(value)} characters long",
                f"keep it under {MAX_REGEX_LENGTH} characters",
            )
            return None
        try:
            regex = re.compile(value)
        except re.error as exc:
            self.r.error(node.loc, key, f"invalid regular expression: {exc}", "fix the pattern")
            return None
        return _matches(get, regex), value

    def _bad(self, node: YNode, key: str, expected: str, hint: str) -> None:
        if isinstance(node, YScalar):
            got = f"{node.value!r}" if node.value is not None else "nothing (null)"
        else:
            got = "a list" if isinstance(node, YSeq) else "a mapping"
        self.r.error(node.loc, key, f"expected {expected}, got {got}", hint)


def _sort_key(spec: Any) -> str:
    return json.dumps(spec, sort_keys=True, default=str)


# -- traced closures (explain) ------------------------------------------------------------------------------


def _slot(index: int) -> Callable[[Env], Any]:
    def get(env: Env) -> Any:
        return env[index]

    return get


def _traced_leaf(key: str, pred: Pred, get: Callable[[Env], Any]) -> Traced:
    def traced(env: Env, recorder: ConditionRecorder) -> bool | None:
        result = pred(env)
        recorder.condition(key, result, get(env))
        return result

    return traced


def _traced_node(key: str, pred: Pred, parts: list[Traced]) -> Traced:
    """any/all/not: every part is traced, then the node's own (untraced) predicate gives its result."""
    items = tuple(parts)

    def traced(env: Env, recorder: ConditionRecorder) -> bool | None:
        for part in items:
            part(env, recorder)
        result = pred(env)
        recorder.condition(key, result, None)
        return result

    return traced


# -- predicate builders (closures) -------------------------------------------------------------------------


def _name_pred(matcher: NameMatcher, index: int) -> Pred:
    def pred(env: Env) -> bool | None:
        return matcher(env[index])

    return pred


def _all(preds: list[Pred]) -> Pred:
    if len(preds) == 1:
        return preds[0]
    items = tuple(preds)

    def pred(env: Env) -> bool | None:
        unknown = False
        for p in items:
            result = p(env)
            if result is False:
                return False
            if result is None:
                unknown = True
        return None if unknown else True

    return pred


def _any(preds: list[Pred]) -> Pred:
    items = tuple(preds)

    def pred(env: Env) -> bool | None:
        unknown = False
        for p in items:
            result = p(env)
            if result is True:
                return True
            if result is None:
                unknown = True
        return None if unknown else False

    return pred


def _not(inner: Pred) -> Pred:
    def pred(env: Env) -> bool | None:
        result = inner(env)
        return None if result is None else not result

    return pred


def _compare(get: Callable[[Env], Any], fn: Callable[[Any, Any], bool], operand: Any) -> Pred:
    def pred(env: Env) -> bool | None:
        value = get(env)
        return fn(value, operand) if is_number(value) else None

    return pred


def _equals(get: Callable[[Env], Any], operand: Any, kind: str, negate: bool) -> Pred:
    def pred(env: Env) -> bool | None:
        value = get(env)
        if value_kind(value) != kind:
            return None
        return bool(value != operand) if negate else bool(value == operand)

    return pred


def _member(get: Callable[[Env], Any], groups: Mapping[str, frozenset[Any]], negate: bool) -> Pred:
    def pred(env: Env) -> bool | None:
        value = get(env)
        group = groups.get(value_kind(value) or "")
        if group is None:
            return None
        found = value in group
        return (not found) if negate else found

    return pred


def _contains(get: Callable[[Env], Any], operand: Any, kind: str) -> Pred:
    def pred(env: Env) -> bool | None:
        value = get(env)
        if isinstance(value, str):
            return (operand in value) if kind == "str" else None
        if isinstance(value, list | tuple):
            return any(value_kind(item) == kind and item == operand for item in value)
        return None

    return pred


def _affix(get: Callable[[Env], Any], operand: str, start: bool) -> Pred:
    def pred(env: Env) -> bool | None:
        value = get(env)
        if not isinstance(value, str):
            return None
        return value.startswith(operand) if start else value.endswith(operand)

    return pred


def _matches(get: Callable[[Env], Any], regex: re.Pattern[str]) -> Pred:
    def pred(env: Env) -> bool | None:
        value = get(env)
        if not isinstance(value, str):
            return None
        return regex.fullmatch(value) is not None

    return pred


def _exists(get: Callable[[Env], Any], expected: bool) -> Pred:
    def pred(env: Env) -> bool | None:
        return (get(env) is not None) is expected

    return pred

"""A policy's rules as formulas the tools can inspect.

The compiled policy keeps its conditions as closures, which can be run but not
read. The tools (explain, lint, prove) need to read them: which field, which
operator, which operand, on which line. This module rebuilds that view from the
policy's own YAML text, with the same parsing helpers the compiler uses, so the
formulas say exactly what the compiled rules do (the operand lists keep every
value with its kind, which the normalised ``rule.spec`` cannot: there ``1`` and
``true`` collapse into one list item).

:func:`truth` mirrors the three-valued semantics of ``policy/conditions.py``
and :func:`evaluate_formula` combines it; a property test checks that they agree
with the compiled policy on random inputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from faramesh.policy.conditions import COMBINATORS, CONJUNCTION, NAME_KEYS, split_key, value_kind
from faramesh.policy.model import Effect, Rule
from faramesh.policy.names import NameMatcher, normalize_name
from faramesh.policy.parser import YMap, YNode, YScalar, YSeq, parse_yaml
from faramesh.policy.policy import Policy
from faramesh.policy.timing import Window, parse_days, parse_hours, parse_tz
from faramesh.policy.values import MISSING, FieldPath, is_number, parse_path

Truth = bool | None  # True, False or None (unknown)

COMPARE_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
OP_TEXT = {
    **COMPARE_OPS,
    "eq": "==",
    "ne": "!=",
    "in": "in",
    "not_in": "not in",
    "contains": "contains",
    "startswith": "starts with",
    "endswith": "ends with",
    "matches": "matches",
    "exists": "exists",
}


@dataclass(frozen=True)
class Atom:
    """One ``<field>_<op>: operand`` condition.

    ``operand`` is a scalar, or for ``in``/``not_in`` a tuple of the listed
    scalars (each kept with its kind).
    """

    path: FieldPath
    op: str
    operand: Any
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)
    key: str = field(default="", compare=False)

    @property
    def ident(self) -> tuple[str, str, Any]:
        """Identity across rules: the same field, operator and operand is the same atom."""
        if self.op in ("in", "not_in"):
            operand: Any = tuple(sorted((value_kind(v) or "", repr(v)) for v in self.operand))
        else:
            operand = (value_kind(self.operand) or "", repr(self.operand))
        return (self.path.text, self.op, operand)

    def describe(self) -> str:
        if self.op == "exists":
            return f"{self.path.text} {'exists' if self.operand else 'is missing'}"
        if self.op in ("in", "not_in"):
            listed = ", ".join(_show(v) for v in self.operand)
            return f"{self.path.text} {OP_TEXT[self.op]} [{listed}]"
        return f"{self.path.text} {OP_TEXT[self.op]} {_show(self.operand)}"


@dataclass(frozen=True)
class Cond:
    atom: Atom
    key: str = field(default="", compare=False)  # the node's name in a traced evaluation (policy/conditions.py)


@dataclass(frozen=True)
class Names:
    """A tool or operation name test inside any/all/not."""

    slot: str  # "tool" or "operation"
    patterns: tuple[str, ...]
    line: int = field(default=0, compare=False)
    key: str = field(default="", compare=False)

    def accepts(self, normalized_name: str) -> bool:
        return NameMatcher(list(self.patterns))(normalized_name)

    def describe(self) -> str:
        return f"{self.slot} is {' or '.join(self.patterns)}"


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Formula, ...]
    line: int = field(default=0, compare=False)
    key: str = field(default="", compare=False)


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Formula, ...]
    line: int = field(default=0, compare=False)
    key: str = field(default="", compare=False)


@dataclass(frozen=True)
class NotOf:
    part: Formula
    line: int = field(default=0, compare=False)
    key: str = field(default="", compare=False)


Formula = Cond | Names | AllOf | AnyOf | NotOf


@dataclass(frozen=True)
class RuleModel:
    """One rule: its compiled form plus its conditions as a formula."""

    index: int
    rule: Rule
    tool: tuple[str, ...] | None  # normalised patterns; None: any tool
    operation: tuple[str, ...] | None
    cond: Formula | None  # None: no conditions (always true)
    window: Window | None

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def effect(self) -> Effect:
        return self.rule.effect

    def accepts_tool(self, normalized_name: str) -> bool:
        return self.tool is None or NameMatcher(list(self.tool))(normalized_name)

    def accepts_operation(self, normalized_name: str) -> bool:
        return self.operation is None or NameMatcher(list(self.operation))(normalized_name)


@dataclass(frozen=True)
class PolicyModel:
    policy: Policy
    rules: tuple[RuleModel, ...]

    @property
    def default(self) -> Effect:
        return self.policy.default


def build_model(policy: Policy) -> PolicyModel:
    """Read the policy's conditions back from its source text.

    The text already compiled without problems, so every rule is present and
    well formed; any surprise here is a bug, raised as ``ValueError``.
    """
    tree, problems = parse_yaml(policy.source_text, policy.source)
    if problems or not isinstance(tree, YMap):
        raise ValueError("the policy text no longer parses")
    rules_node = tree.get("rules")
    items = rules_node.items if isinstance(rules_node, YSeq) else []
    if len(items) != len(policy.rules):
        raise ValueError("the policy text and the compiled rules disagree")
    models = []
    for index, (node, rule) in enumerate(zip(items, policy.rules, strict=True)):
        assert isinstance(node, YMap)
        models.append(_rule_model(index, node, rule))
    return PolicyModel(policy, tuple(models))


def _rule_model(index: int, node: YMap, rule: Rule) -> RuleModel:
    tool: tuple[str, ...] | None = None
    operation: tuple[str, ...] | None = None
    cond: Formula | None = None
    match = node.get("match")
    base = f"rules[{index}].match"  # the compiler's key path, which names traced conditions
    if isinstance(match, YMap):
        parts: list[Formula] = []
        for name, loc, value in match:
            if name in NAME_KEYS:
                patterns = NameMatcher(_strings(value)).patterns
                if name == "tool":
                    tool = patterns
                else:
                    operation = patterns
                continue
            parts.append(_formula(name, loc.line, loc.column, value, f"{base}.{name}"))
        if parts:
            cond = parts[0] if len(parts) == 1 else AllOf(tuple(parts), match.loc.line, base + CONJUNCTION)
    window = None
    during = rule.spec.get("during")
    if during:  # rebuilt from its normalised form: days, hours and zone are all spelled out there
        start, end = parse_hours(during["hours"])
        window = Window(parse_days(list(during["days"])), start, end, parse_tz(during["tz"]), str(during["tz"]))
    return RuleModel(index, rule, tool, operation, cond, window)


def _strings(node: YNode) -> list[str]:
    items = node.items if isinstance(node, YSeq) else [node]
    return [str(item.value) for item in items if isinstance(item, YScalar)]


def _mapping(node: YNode, key: str) -> Formula:
    assert isinstance(node, YMap)
    parts: list[Formula] = []
    for name, loc, value in node:
        if name in NAME_KEYS:
            slot = "tool" if name == "tool" else "operation"
            parts.append(Names(slot, NameMatcher(_strings(value)).patterns, loc.line, f"{key}.{name}"))
        else:
            parts.append(_formula(name, loc.line, loc.column, value, f"{key}.{name}"))
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts), node.loc.line, key + CONJUNCTION)


def _formula(name: str, line: int, column: int, value: YNode, key: str) -> Formula:
    if name in COMBINATORS:
        if name == "not":
            return NotOf(_mapping(value, key), line, key)
        assert isinstance(value, YSeq)
        parts = tuple(_mapping(item, f"{key}[{i}]") for i, item in enumerate(value.items))
        return AnyOf(parts, line, key) if name == "any" else AllOf(parts, line, key)
    split = split_key(name)
    assert split is not None, name
    field_text, op = split
    path = parse_path(field_text)
    assert path is not None, name
    operand: Any
    if op in ("in", "not_in"):
        assert isinstance(value, YSeq)
        seen: list[tuple[str | None, Any]] = []
        for item in value.items:
            assert isinstance(item, YScalar)
            entry = (value_kind(item.value), item.value)
            if entry not in seen:
                seen.append(entry)
        operand = tuple(v for _, v in seen)
    else:
        assert isinstance(value, YScalar)
        operand = value.value
    return Cond(Atom(path, op, operand, line, column, name), key)


# -- semantics (mirrors policy/conditions.py) ------------------------------------------------------------------


def groups_of(values: tuple[Any, ...]) -> dict[str, frozenset[Any]]:
    groups: dict[str, set[Any]] = {}
    for v in values:
        kind = value_kind(v)
        if kind is not None:
            groups.setdefault(kind, set()).add(v)
    return {k: frozenset(v) for k, v in groups.items()}


_regex_cache: dict[str, re.Pattern[str]] = {}


def regex(pattern: str) -> re.Pattern[str]:
    found = _regex_cache.get(pattern)
    if found is None:
        if len(_regex_cache) > 1024:
            _regex_cache.clear()
        found = _regex_cache[pattern] = re.compile(pattern)
    return found


def truth(atom: Atom, value: Any) -> Truth:
    """The condition's result for a field value (``None`` when the field is missing)."""
    op, operand = atom.op, atom.operand
    if op in COMPARE_OPS:
        if not is_number(value):
            return None
        if op == "gt":
            return bool(value > operand)
        if op == "gte":
            return bool(value >= operand)
        if op == "lt":
            return bool(value < operand)
        return bool(value <= operand)
    if op in ("eq", "ne"):
        if value_kind(value) != value_kind(operand):
            return None
        return bool(value != operand) if op == "ne" else bool(value == operand)
    if op in ("in", "not_in"):
        group = groups_of(operand).get(value_kind(value) or "")
        if group is None:
            return None
        found = value in group
        return (not found) if op == "not_in" else found
    if op == "contains":
        kind = value_kind(operand)
        if isinstance(value, str):
            return (operand in value) if kind == "str" else None
        if isinstance(value, list | tuple):
            return any(value_kind(item) == kind and item == operand for item in value)
        return None
    if op in ("startswith", "endswith"):
        if not isinstance(value, str):
            return None
        return value.startswith(operand) if op == "startswith" else value.endswith(operand)
    if op == "matches":
        if not isinstance(value, str):
            return None
        return regex(operand).fullmatch(value) is not None
    if op == "exists":
        return (value is not None) is operand
    raise ValueError(f"unknown operator {op!r}")


@dataclass(frozen=True)
class Inputs:
    """One action as the policy sees it (names already normalised)."""

    tool: str
    operation: str
    params: Mapping[str, Any] | None = None
    context: Mapping[str, Any] | None = None
    agent: Mapping[str, Any] | None = None
    now: datetime | None = None

    @classmethod
    def of(
        cls,
        tool: str,
        operation: str,
        params: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        agent: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Inputs:
        return cls(normalize_name(tool), normalize_name(operation), params, context, agent, now)

    def value(self, path: FieldPath) -> Any:
        found = path.resolve(params=self.params, context=self.context, agent=self.agent)
        return None if found is MISSING else found


def and3(results: list[Truth]) -> Truth:
    if any(r is False for r in results):
        return False
    return None if any(r is None for r in results) else True


def or3(results: list[Truth]) -> Truth:
    if any(r is True for r in results):
        return True
    return None if any(r is None for r in results) else False


def evaluate_formula(formula: Formula, inputs: Inputs) -> Truth:
    if isinstance(formula, Cond):
        return truth(formula.atom, inputs.value(formula.atom.path))
    if isinstance(formula, Names):
        return formula.accepts(inputs.tool if formula.slot == "tool" else inputs.operation)
    if isinstance(formula, AllOf):
        return and3([evaluate_formula(p, inputs) for p in formula.parts])
    if isinstance(formula, AnyOf):
        return or3([evaluate_formula(p, inputs) for p in formula.parts])
    inner = evaluate_formula(formula.part, inputs)
    return None if inner is None else not inner


def rule_outcome(rule: RuleModel, inputs: Inputs) -> str:
    """What :meth:`Policy.explain` would say for a rule: tool, operation, during, matched, false or unknown."""
    if not rule.accepts_tool(inputs.tool):
        return "tool"
    if not rule.accepts_operation(inputs.operation):
        return "operation"
    if rule.window is not None and (inputs.now is None or not rule.window.contains(inputs.now)):
        return "during"
    if rule.cond is None:
        return "matched"
    result = evaluate_formula(rule.cond, inputs)
    return "matched" if result is True else ("false" if result is False else "unknown")


def atoms(formula: Formula | None) -> Iterator[Atom]:
    """Every condition in a formula, in file order."""
    if formula is None:
        return
    if isinstance(formula, Cond):
        yield formula.atom
    elif isinstance(formula, AllOf | AnyOf):
        for part in formula.parts:
            yield from atoms(part)
    elif isinstance(formula, NotOf):
        yield from atoms(formula.part)


def name_tests(formula: Formula | None) -> Iterator[Names]:
    if formula is None:
        return
    if isinstance(formula, Names):
        yield formula
    elif isinstance(formula, AllOf | AnyOf):
        for part in formula.parts:
            yield from name_tests(part)
    elif isinstance(formula, NotOf):
        yield from name_tests(formula.part)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def show_value(value: Any) -> str:
    """A field value as people read it in explanations."""
    if value is None:
        return "missing"
    if isinstance(value, str | bool | int | float):
        return _show(value)
    if isinstance(value, list | tuple):
        return "a list" if len(value) > 5 else "[" + ", ".join(show_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__

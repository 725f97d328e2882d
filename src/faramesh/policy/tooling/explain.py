"""Why a policy decides what it decides, condition by condition.

:func:`explain` is :meth:`Policy.evaluate` with a recorder: the decision, each
rule tried with its outcome, and every condition's result with the value it saw
are what that one evaluation reported, so the explanation cannot disagree with
the decision. The policy model (``model.py``) only supplies the words: each
condition's text, its line and how the conditions nest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from faramesh.policy.model import Decision, Rule
from faramesh.policy.names import normalize_name
from faramesh.policy.policy import Policy

from .model import (
    COMPARE_OPS,
    OP_TEXT,
    AllOf,
    AnyOf,
    Cond,
    Formula,
    Inputs,
    Names,
    NotOf,
    RuleModel,
    Truth,
    build_model,
    show_value,
)

OUTCOME_TEXT = {
    "matched": "matched",
    "false": "conditions false",
    "unknown": "conditions unknown (missing or wrong-kind data)",
    "operation": "operation does not match",
    "during": "outside its time window",
    "error": "error while evaluating",
}


@dataclass
class ConditionTrace:
    text: str
    result: Truth
    why: str
    depth: int = 0
    line: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"condition": self.text, "result": self.result, "why": self.why, "line": self.line}


@dataclass
class RuleExplanation:
    rule_id: str
    line: int
    effect: str
    outcome: str
    conditions: list[ConditionTrace] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "line": self.line,
            "effect": self.effect,
            "outcome": self.outcome,
            "conditions": [c.to_dict() for c in self.conditions],
        }


@dataclass
class DetailedExplanation:
    decision: Decision
    rules: list[RuleExplanation]
    other_rules: int  # rules for other tools, never considered

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision.to_dict(),
            "rules": [r.to_dict() for r in self.rules],
            "other_rules": self.other_rules,
        }

    def render(self) -> str:
        d = self.decision
        by = f"rule {d.rule_id}" if d.rule_id else "the default (no rule matched)"
        lines = [f"decision: {d.effect.value} by {by}", f"reason:   {d.reason}", f"risk:     {d.risk}"]
        if not self.rules:
            lines.append("No rule names this tool.")
        for r in self.rules:
            mark = "→" if r.outcome == "matched" else "·"
            lines.append(
                f"{mark} rule {r.rule_id} (line {r.line}, {r.effect}): {OUTCOME_TEXT.get(r.outcome, r.outcome)}"
            )
            for c in r.conditions:
                sign = {True: "✓", False: "✗", None: "?"}[c.result]
                lines.append(f"    {'  ' * c.depth}{sign} {c.text}: {c.why}")
        if self.other_rules:
            lines.append(f"({self.other_rules} other rule(s) are for other tools and were not considered)")
        return "\n".join(lines)


class _Seen:
    """A :class:`faramesh.policy.Recorder` that keeps everything one evaluation reported."""

    def __init__(self) -> None:
        self.conditions: dict[str, tuple[Truth, Any]] = {}
        self.rules: list[tuple[Rule, str]] = []
        self.decision: Decision | None = None

    def condition(self, key: str, result: bool | None, value: Any) -> None:
        self.conditions[key] = (result, value)

    def rule(self, rule: Rule, outcome: str) -> None:
        self.rules.append((rule, outcome))

    def decided(self, decision: Decision) -> None:
        self.decision = decision


def explain(
    policy: Policy,
    *,
    tool: str,
    operation: str,
    params: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    agent: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> DetailedExplanation:
    """The decision, and for each rule considered which condition held or failed and why."""
    seen = _Seen()
    decision = policy.evaluate(
        tool=tool, operation=operation, params=params, context=context, agent=agent, now=now, recorder=seen
    )
    model = build_model(policy)
    by_id = {r.id: r for r in model.rules}
    valid_names = isinstance(tool, str) and isinstance(operation, str)
    tool_n = normalize_name(tool) if valid_names else ""
    inputs = Inputs(tool_n, normalize_name(operation) if valid_names else "", params, context, agent, now)
    rules: list[RuleExplanation] = []
    for rule, outcome in seen.rules:
        modelled = by_id[rule.id]
        traced = RuleExplanation(rule.id, rule.line, rule.effect.value, outcome)
        if outcome == "operation":
            traced.conditions.append(
                ConditionTrace(
                    f"operation is {' or '.join(modelled.operation or ())}",
                    False,
                    f"the operation is {inputs.operation!r}",
                )
            )
        elif outcome == "during" and modelled.window is not None:
            window = modelled.window.to_dict()
            when = now.isoformat() if now else "no time was given"
            traced.conditions.append(
                ConditionTrace(
                    f"during {','.join(window['days'])} {window['hours']} {window['tz']}",  # type: ignore[arg-type]
                    False,
                    f"the time is {when}",
                )
            )
        elif outcome in ("matched", "false", "unknown"):
            _trace_rule(modelled, inputs, seen.conditions, traced)
        rules.append(traced)
    candidates = sum(1 for r in model.rules if r.accepts_tool(inputs.tool)) if valid_names else 0
    return DetailedExplanation(decision, rules, len(model.rules) - candidates)


Seen = dict[str, tuple[Truth, Any]]


def _trace_rule(rule: RuleModel, inputs: Inputs, seen: Seen, out: RuleExplanation) -> None:
    if rule.operation is not None:
        out.conditions.append(
            ConditionTrace(
                f"operation is {' or '.join(rule.operation)}", True, f"the operation is {inputs.operation!r}"
            )
        )
    if rule.window is not None:
        window = rule.window.to_dict()
        out.conditions.append(
            ConditionTrace(
                f"during {','.join(window['days'])} {window['hours']} {window['tz']}",  # type: ignore[arg-type]
                True,
                f"the time {inputs.now.isoformat() if inputs.now else ''} is inside",
            )
        )
    if rule.cond is not None:
        _trace(rule.cond, seen, out.conditions, 0)


def _trace(formula: Formula, seen: Seen, out: list[ConditionTrace], depth: int) -> None:
    if isinstance(formula, AllOf) and depth == 0:
        for part in formula.parts:  # the top-level match: its conditions, one per line
            _trace(part, seen, out, depth)
        return
    result, value = seen[formula.key]
    if isinstance(formula, Cond):
        atom = formula.atom
        out.append(
            ConditionTrace(atom.describe(), result, _why(atom.op, atom.operand, value, result), depth, atom.line)
        )
        return
    if isinstance(formula, Names):
        out.append(ConditionTrace(formula.describe(), result, f"the {formula.slot} is {value!r}", depth, formula.line))
        return
    if isinstance(formula, NotOf):
        inner = seen[formula.part.key][0]
        why = "unknown stays unknown" if inner is None else f"the inner conditions are {_word(inner)}"
        out.append(ConditionTrace("not", result, why, depth, formula.line))
        _trace_parts([formula.part], seen, out, depth + 1)
        return
    name = "all of" if isinstance(formula, AllOf) else "any of"
    out.append(ConditionTrace(name, result, _combined_why(formula, seen, result), depth, formula.line))
    _trace_parts(list(formula.parts), seen, out, depth + 1)


def _trace_parts(parts: list[Formula], seen: Seen, out: list[ConditionTrace], depth: int) -> None:
    for part in parts:
        if isinstance(part, AllOf) and len(part.parts) > 1:
            result = seen[part.key][0]
            out.append(ConditionTrace("all of", result, _combined_why(part, seen, result), depth, part.line))
            _trace_parts(list(part.parts), seen, out, depth + 1)
        else:
            _trace(part, seen, out, depth)


def _combined_why(formula: AllOf | AnyOf, seen: Seen, result: Truth) -> str:
    results = [seen[p.key][0] for p in formula.parts]
    counts = f"{results.count(True)} true, {results.count(False)} false, {results.count(None)} unknown"
    return f"{counts}, so {_word(result)}"


def _word(result: Truth) -> str:
    return {True: "true", False: "false", None: "unknown"}[result]


def _why(op: str, operand: Any, value: Any, result: Truth) -> str:
    shown = show_value(value)
    if op == "exists":
        return "the field is present" if value is not None else "the field is missing"
    if value is None:
        return "the field is missing, so the condition is unknown (never a match)"
    if result is None:
        needed = (
            "a number" if op in COMPARE_OPS else "a string" if op in ("startswith", "endswith", "matches") else None
        )
        if needed:
            return f"the value {shown} is not {needed}, so the condition is unknown"
        return f"the value {shown} is of another kind than the operand, so the condition is unknown"
    if op in COMPARE_OPS:
        relation = OP_TEXT[op] if result else {"gt": "<=", "gte": "<", "lt": ">=", "lte": ">"}[op]
        return f"{shown} {relation} {show_value(operand)}"
    if op in ("in", "not_in"):
        listed = "is listed" if (result if op == "in" else not result) else "is not listed"
        return f"{shown} {listed}"
    verb = {
        "eq": "equals" if result else "differs from",
        "ne": "differs from" if result else "equals",
        "contains": "contains" if result else "does not contain",
        "startswith": "starts with" if result else "does not start with",
        "endswith": "ends with" if result else "does not end with",
        "matches": "matches" if result else "does not match",
    }[op]
    return f"{shown} {verb} {show_value(operand)}"

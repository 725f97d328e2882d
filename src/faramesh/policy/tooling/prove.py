"""Prove a claim about every action a policy can see, or find one that breaks it.

A claim is a premise and a conclusion::

    tool=refund operation=process amount>1000 => not allow

The premise is a conjunction of tests on the tool and operation names and on
fields (``amount`` is ``params.amount``; ``context.env``, ``agent.id`` …):
``=``, ``!=``, ``>``, ``>=``, ``<``, ``<=``, ``~`` and ``!~``. ``=`` compares
like ``_eq`` (same kind: ``amount=5`` is a number, ``tier=gold`` and
``tier="5"`` are strings, ``flag=true`` a boolean); ``!=`` means "not equal",
a missing field included; ``x=null`` means "x is missing" and ``x!=null`` "x is
present"; ``groups~finance`` means "contains" like ``_contains`` (an item of a
list, or a substring), ``!~`` its negation. A tool or
operation value may be a glob (``tool=stripe.*``). The conclusion is one or
more effects joined by ``or``, or ``not`` and one effect.

The answer is one of:

- **proven**: every input satisfying the premise gets an allowed decision;
- **counter-example**: a concrete action (tool, operation, params, context,
  agent and, if a time window matters, the time) satisfying the premise whose
  decision, computed by the real evaluator, breaks the claim;
- **cannot decide**: some case could not be settled exactly (a regular
  expression no example string satisfies, a time-window combination, a rate
  limit or budget that can turn a decision into a deny, or too many cases).

The analysis is over what the server sees: names the API accepts (1-128
characters of ``a-z 0-9 _ . : / -`` after case folding), any JSON params and
context, and an ``agent`` of the server's shape (``id``, ``role``, ``groups``),
with the request time always given.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from faramesh.policy.model import Effect
from faramesh.policy.names import NameMatcher, normalize_name
from faramesh.policy.policy import Policy
from faramesh.policy.values import parse_path

from .explore import Example, Explorer, TooComplex
from .model import Atom, build_model, truth
from .nameclasses import TooManyNames
from .solver import SAT, UNKNOWN

VERDICTS = ("proven", "counter-example", "cannot decide")
_EFFECT_NAMES = {
    "allow": Effect.ALLOW,
    "allowed": Effect.ALLOW,
    "deny": Effect.DENY,
    "denied": Effect.DENY,
    "require_approval": Effect.REQUIRE_APPROVAL,
    "require-approval": Effect.REQUIRE_APPROVAL,
    "approval": Effect.REQUIRE_APPROVAL,
}
_TEST = re.compile(
    r"""\s*(?:(?:and|AND|&&|,)\s+)?(?P<key>[A-Za-z_][\w.\-]*)\s*(?P<op>>=|<=|!=|!~|==|=|>|<|~)\s*"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,]+)\s*,?"""
)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_COMPARE = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


class ClaimError(ValueError):
    """The claim could not be read; the message says what to write instead."""


@dataclass(frozen=True)
class Claim:
    text: str
    lits: tuple[tuple[Atom, frozenset[bool | None]], ...]
    tool: tuple[str, ...] | None  # normalised name or glob the tool must match
    operation: tuple[str, ...] | None
    effects: frozenset[Effect]

    def conclusion(self) -> str:
        return " or ".join(e.value for e in Effect if e in self.effects)

    def holds_premise(self, example: Example) -> bool:
        """Does a concrete action satisfy the premise? (Checked before a counter-example is shown.)"""
        if self.tool is not None and not NameMatcher(list(self.tool))(normalize_name(example.tool)):
            return False
        if self.operation is not None and not NameMatcher(list(self.operation))(normalize_name(example.operation)):
            return False
        inputs = example.inputs()
        return all(truth(atom, inputs.value(atom.path)) in allowed for atom, allowed in self.lits)


@dataclass
class ProofResult:
    claim: Claim
    verdict: str
    counterexample: Example | None = None
    reasons: list[str] = field(default_factory=list)
    cases: int = 0
    vacuous: bool = False

    @property
    def proven(self) -> bool:
        return self.verdict == "proven"

    def to_dict(self) -> dict[str, Any]:
        return {
            "claim": self.claim.text,
            "verdict": self.verdict,
            "counterexample": self.counterexample.to_dict() if self.counterexample else None,
            "reasons": list(self.reasons),
            "cases": self.cases,
            "vacuous": self.vacuous,
        }

    def render(self) -> str:
        lines = [f"claim: {self.claim.text}"]
        if self.verdict == "proven":
            if self.vacuous:
                lines.append("proven: no input satisfies the premise, so the claim holds trivially")
            else:
                lines.append(
                    f"proven: every action matching the premise is decided {self.claim.conclusion()} "
                    f"({self.cases} case(s) checked)"
                )
        elif self.verdict == "counter-example":
            ex = self.counterexample
            assert ex is not None
            d = ex.decision
            by = f"rule {d.rule_id}" if d.rule_id else "the default"
            lines.append(f"counter-example: this action is decided {d.effect.value} by {by} ({d.reason})")
            lines.append(f"  tool:      {ex.tool}")
            lines.append(f"  operation: {ex.operation}")
            lines.append(f"  params:    {json.dumps(ex.params, ensure_ascii=False)}")
            if ex.context:
                lines.append(f"  context:   {json.dumps(ex.context, ensure_ascii=False)}")
            lines.append(f"  agent:     {json.dumps(ex.agent, ensure_ascii=False)}")
            if ex.uses_time:
                lines.append(f"  time:      {ex.now.isoformat()}")
        else:
            lines.append("cannot decide: some cases are outside what the analysis settles exactly:")
            lines.extend(f"  - {reason}" for reason in self.reasons)
        return "\n".join(lines)


# -- claims ----------------------------------------------------------------------------------------------------


def parse_claim(text: str) -> Claim:
    """Read ``premise => conclusion``; raises :class:`ClaimError` with a fix."""
    if not isinstance(text, str) or "=>" not in text:
        raise ClaimError('a claim is "<premise> => <conclusion>", e.g. "tool=refund amount>1000 => not allow"')
    premise, _, conclusion = text.rpartition("=>")
    effects = _conclusion(conclusion.strip())
    lits: list[tuple[Atom, frozenset[bool | None]]] = []
    names: dict[str, tuple[str, ...]] = {}
    pos = 0
    premise = premise.strip()
    while pos < len(premise):
        m = _TEST.match(premise, pos)
        if m is None or m.end() == pos:
            rest = premise[pos:].strip()
            raise ClaimError(
                f"cannot read {rest!r}: write tests such as tool=refund, amount>1000, context.env=prod, "
                'tier="gold" (quote values with spaces)'
            )
        pos = m.end()
        key, op, raw = m.group("key"), m.group("op"), m.group("value")
        if key in ("tool", "operation", "op"):
            slot = "tool" if key == "tool" else "operation"
            if op not in ("=", "=="):
                raise ClaimError(f"{slot} takes = and a name or glob, e.g. {slot}=refund")
            if slot in names:
                raise ClaimError(f"{slot} is given twice")
            value = _unquote(raw)
            if not value or not re.fullmatch(r"[A-Za-z0-9_.:/*?-]+", value):
                raise ClaimError(f"invalid {slot} name {value!r}: use letters, digits, _ . : / - and the globs * ?")
            names[slot] = (normalize_name(value),)
            continue
        path = parse_path(key)
        if path is None:
            raise ClaimError(f"invalid field path {key!r}")
        lits.append(_literal(path, op, raw))
    return Claim(text.strip(), tuple(lits), names.get("tool"), names.get("operation"), effects)


def _conclusion(text: str) -> frozenset[Effect]:
    words = text.replace(",", " ").split()
    if not words:
        raise ClaimError("the conclusion is empty: write e.g. => not allow, => deny, => deny or require_approval")
    negate = words[0].lower() == "not"
    if negate:
        words = words[1:]
    named = [w for w in words if w.lower() != "or"]
    effects = set()
    for word in named:
        effect = _EFFECT_NAMES.get(word.lower())
        if effect is None:
            raise ClaimError(f"unknown effect {word!r}: use allow, deny or require_approval")
        effects.add(effect)
    if not effects or (negate and len(effects) != 1):
        raise ClaimError("write one effect after not (=> not allow), or effects joined by or (=> deny or allow)")
    return frozenset(set(Effect) - effects) if negate else frozenset(effects)


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return str(json.loads(raw))
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    return raw


def _literal(path: Any, op: str, raw: str) -> tuple[Atom, frozenset[bool | None]]:
    quoted = raw[:1] in ("'", '"')
    value: Any = _unquote(raw)
    if not quoted:
        if raw in ("true", "false"):
            value = raw == "true"
        elif raw in ("null", "missing"):
            value = None
        elif _NUMBER.fullmatch(raw):
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
    key = f"{path.text}{op}{raw}"
    if op in _COMPARE:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ClaimError(f"{key}: {op} needs a number")
        return Atom(path, _COMPARE[op], value, key=key), frozenset({True})
    if op in ("~", "!~"):  # contains: an item of a list, or a substring of a string
        if value is None:
            raise ClaimError(f"{key}: {op} needs a value to look for")
        contains = Atom(path, "contains", value, key=key)
        return contains, frozenset({False, None}) if op == "!~" else frozenset({True})
    if value is None:  # x=null: the field is missing; x!=null: it is present
        missing = Atom(path, "exists", False, key=key)
        return missing, frozenset({False}) if op == "!=" else frozenset({True})
    atom = Atom(path, "eq", value, key=key)
    return (atom, frozenset({False, None})) if op == "!=" else (atom, frozenset({True}))


# -- proof -----------------------------------------------------------------------------------------------------


def prove(policy: Policy, claim: Claim | str, *, budget: int | None = None) -> ProofResult:
    """Decide whether ``claim`` holds for every action the policy can see (see the module docs)."""
    if isinstance(claim, str):
        claim = parse_claim(claim)
    explorer = Explorer(build_model(policy), **({"budget": budget} if budget else {}))
    reasons: list[str] = []

    def note(reason: str) -> None:
        if reason not in reasons:
            reasons.append(reason)

    try:
        start = explorer.start(list(claim.lits))
        if start is None:
            return ProofResult(claim, "proven", cases=0, vacuous=True)
        tools = explorer.classes("tool", claim.tool)
        operations = explorer.classes("operation", claim.operation)
        cases = 0
        for tool in tools:
            for operation in operations:
                for rule, store in explorer.walk(start, tool, operation):
                    cases += 1
                    effect = rule.effect if rule is not None else policy.default
                    if effect in claim.effects:
                        if rule is not None and rule.rule.limits and Effect.DENY not in claim.effects:
                            note(
                                f"rule {rule.id} (line {rule.rule.line}) decides {effect.value} but has a rate "
                                "limit or budget: once it is used up the server denies instead"
                            )
                        continue
                    solution = explorer.solver.status(store)
                    if solution.status == SAT:
                        example = explorer.example(store, tool, operation)
                        if (
                            example is not None
                            and example.decision.effect not in claim.effects
                            and claim.holds_premise(example)
                        ):
                            return ProofResult(claim, "counter-example", example, cases=cases)
                        by = f"rule {rule.id}" if rule is not None else "the default"
                        note(f"a case decided {effect.value} by {by} has no input the analysis could build")
                    elif solution.status == UNKNOWN:
                        for reason in solution.reasons or ["an unsettled case"]:
                            by = f"rule {rule.id}" if rule is not None else "the default"
                            note(f"{reason} (a case that {by} would decide {effect.value})")
    except (TooComplex, TooManyNames) as exc:
        note(str(exc))
        return ProofResult(claim, "cannot decide", reasons=reasons, cases=explorer.steps)
    if reasons:
        return ProofResult(claim, "cannot decide", reasons=reasons, cases=cases)
    return ProofResult(claim, "proven", cases=cases)

"""Case analysis over a policy's rules: which rule decides which part of the input space.

The explorer walks the rules in file order, as evaluation does. At each rule
the space splits in two: the rule matches (its window holds and its conditions
are true), or it does not (its window does not hold, or its conditions are
false or unknown) and the walk goes on. Every split adds literals to a
:class:`Store` and stops as soon as the solver shows them contradictory, so
only the cases some input can reach are followed. Names are handled per
:class:`NameClass`, so tool and operation tests are plain true/false.

Splits are disjoint (for ``any`` the first true part is the one taken), so the
number of cases is the number of distinct ways the rules can fall, not more.
"""

from __future__ import annotations

from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faramesh.policy.model import Decision
from faramesh.policy.names import is_glob
from faramesh.policy.values import FieldPath, parse_path

from .model import AllOf, AnyOf, Atom, Cond, Formula, Inputs, Names, NotOf, PolicyModel, RuleModel, name_tests
from .nameclasses import NameClass, classes_for_name, name_classes
from .solver import SAT, UNSAT, Solution, Solver, Store

DEFAULT_BUDGET = 100_000
REFERENCE_NOW = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)  # used when no rule looks at the time

T, NT, F, NF = "T", "nT", "F", "nF"
ALLOWED = {T: frozenset({True}), NT: frozenset({False, None}), F: frozenset({False}), NF: frozenset({True, None})}
FLIP = {T: F, F: T, NT: NF, NF: NT}  # through `not`
OTHER = {T: NT, NT: T, F: NF, NF: F}  # the complement


class TooComplex(Exception):
    """The analysis needed more steps than its budget."""


@dataclass(frozen=True)
class Example:
    """A concrete action, and what the policy decides for it."""

    tool: str
    operation: str
    params: dict[str, Any]
    context: dict[str, Any]
    agent: dict[str, Any]
    now: datetime
    uses_time: bool
    decision: Decision

    def inputs(self) -> Inputs:
        return Inputs(self.tool, self.operation, self.params, self.context, self.agent, self.now)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tool": self.tool,
            "operation": self.operation,
            "params": self.params,
            "context": self.context,
            "agent": self.agent,
            "decision": self.decision.effect.value,
            "rule_id": self.decision.rule_id,
            "reason": self.decision.reason,
        }
        if self.uses_time:
            out["now"] = self.now.isoformat()
        return out


class Explorer:
    def __init__(self, model: PolicyModel, *, budget: int = DEFAULT_BUDGET) -> None:
        self.model = model
        self.solver = Solver()
        self.budget = budget
        self.steps = 0
        self._patterns: dict[str, frozenset[str]] = {}
        self._classes: dict[frozenset[str], list[NameClass]] = {}
        self._limited: dict[tuple[str, tuple[str, ...]], list[NameClass]] = {}

    def restart(self) -> Explorer:
        """A fresh step budget for the next question (the caches stay: they depend only on the policy)."""
        self.steps = 0
        return self

    # -- names

    def patterns(self, slot: str) -> frozenset[str]:
        """Every pattern the policy uses for tool (or operation) names, top level and nested."""
        if slot not in self._patterns:
            found: set[str] = set()
            for rule in self.model.rules:
                top = rule.tool if slot == "tool" else rule.operation
                found.update(top or ())
                for test in name_tests(rule.cond):
                    if test.slot == slot:
                        found.update(test.patterns)
            self._patterns[slot] = frozenset(found)
        return self._patterns[slot]

    def classes(self, slot: str, any_of: tuple[str, ...] | None = None) -> list[NameClass]:
        """Name classes, limited to names that match one of ``any_of`` (normalised patterns) when given."""
        universe = self.patterns(slot) | frozenset(any_of or ())
        if any_of is None:
            return self._all_classes(universe)
        key = (slot, any_of)
        if key in self._limited:
            return self._limited[key]
        out: dict[frozenset[str], NameClass] = {}
        for pattern in any_of:
            if is_glob(pattern):
                found = [c for c in self._all_classes(universe) if pattern in c.accepted]
            else:
                found = classes_for_name(universe, pattern)
            for cls in found:
                out.setdefault(cls.accepted, cls)
        self._limited[key] = list(out.values())
        return self._limited[key]

    def _all_classes(self, universe: frozenset[str]) -> list[NameClass]:
        if universe not in self._classes:
            self._classes[universe] = name_classes(universe)
        return self._classes[universe]

    def candidates(self, tool: NameClass, operation: NameClass) -> list[RuleModel]:
        return [
            r
            for r in self.model.rules
            if (r.tool is None or tool.accepted.intersection(r.tool))
            and (r.operation is None or operation.accepted.intersection(r.operation))
        ]

    # -- literals

    def feasible(self, store: Store) -> bool:
        self.steps += 1
        if self.steps > self.budget:
            raise TooComplex(f"the analysis needed more than {self.budget} steps")
        return self.solver.status(store).status != UNSAT

    def start(self, lits: list[tuple[Atom, frozenset[bool | None]]]) -> Store | None:
        store: Store | None = Store()
        for atom, allowed in lits:
            assert store is not None
            store = store.with_lit(atom, allowed)
            if store is None:
                return None
        return store if store is not None and self.feasible(store) else None

    def constrain(
        self, formula: Formula, want: str, store: Store, names: tuple[NameClass, NameClass]
    ) -> Iterator[Store]:
        """Every case (store) in which ``formula`` has a result allowed by ``want``."""
        if isinstance(formula, Names):
            cls = names[0] if formula.slot == "tool" else names[1]
            if bool(cls.accepted.intersection(formula.patterns)) in ALLOWED[want]:
                yield store
            return
        if isinstance(formula, Cond):
            nxt = store.with_lit(formula.atom, ALLOWED[want])
            if nxt is not None and self.feasible(nxt):
                yield nxt
            return
        if isinstance(formula, NotOf):
            yield from self.constrain(formula.part, FLIP[want], store, names)
            return
        parts = formula.parts
        every = (want in (T, NF)) if isinstance(formula, AllOf) else (want in (F, NT))
        assert isinstance(formula, AllOf | AnyOf)
        if every:
            yield from self._every(parts, want, store, names)
            return
        # Disjoint split: part j is the first with the wanted result; the parts before it have the other one.
        for j in range(len(parts)):
            for before in self._every(parts[:j], OTHER[want], store, names):
                yield from self.constrain(parts[j], want, before, names)

    def _every(
        self, parts: tuple[Formula, ...], want: str, store: Store, names: tuple[NameClass, NameClass]
    ) -> Iterator[Store]:
        if not parts:
            yield store
            return
        for first in self.constrain(parts[0], want, store, names):
            yield from self._every(parts[1:], want, first, names)

    def match(self, rule: RuleModel, store: Store, names: tuple[NameClass, NameClass]) -> Iterator[Store]:
        """The cases in which ``rule`` matches (given that it is a candidate for these names)."""
        if rule.window is not None:
            inside = store.with_window(rule.index, rule.window, True)
            if inside is None:
                return
            store = inside
        if rule.cond is None:
            if self.feasible(store):
                yield store
            return
        yield from self.constrain(rule.cond, T, store, names)

    def miss(self, rule: RuleModel, store: Store, names: tuple[NameClass, NameClass]) -> Iterator[Store]:
        """The cases in which ``rule`` does not match."""
        if rule.window is not None:
            outside = store.with_window(rule.index, rule.window, False)
            if outside is not None and self.feasible(outside):
                yield outside
            inside = store.with_window(rule.index, rule.window, True)
            if inside is None:
                return
            store = inside
        if rule.cond is not None:
            yield from self.constrain(rule.cond, NT, store, names)

    def walk(
        self, store: Store, tool: NameClass, operation: NameClass, *, before: int | None = None
    ) -> Iterator[tuple[RuleModel | None, Store]]:
        """Every case and the rule that decides it (None: the default).

        With ``before``, stop at the first candidate whose index is not below it and
        yield only the cases in which none of the earlier candidates matched.
        """
        names = (tool, operation)
        cands = self.candidates(tool, operation)
        if before is not None:
            cands = [r for r in cands if r.index < before]

        def rec(i: int, current: Store) -> Iterator[tuple[RuleModel | None, Store]]:
            if i == len(cands):
                yield None, current
                return
            rule = cands[i]
            if before is None:
                for matched in self.match(rule, current, names):
                    yield rule, matched
            for missed in self.miss(rule, current, names):
                yield from rec(i + 1, missed)

        yield from rec(0, store)

    # -- examples

    def example(self, store: Store, tool: NameClass, operation: NameClass) -> Example | None:
        """A concrete action for a satisfiable case, with the policy's real decision (None if it cannot be built)."""
        solution = self.solver.status(store)
        if solution.status != SAT:
            return None
        try:
            params, context, agent = build_inputs(solution)
        except _Clash:
            return None
        now = solution.now or REFERENCE_NOW
        decision = self.model.policy.evaluate(
            tool=tool.witness, operation=operation.witness, params=params, context=context, agent=agent, now=now
        )
        return Example(tool.witness, operation.witness, params, context, agent, now, bool(store.windows), decision)


class _Clash(Exception):
    pass


def build_inputs(solution: Solution) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Params, context and agent holding every field's witness value."""
    roots: dict[str, dict[str, Any]] = {
        "params": {},
        "context": {},
        "agent": {"id": "agent-1", "groups": [], "role": "agent"},
    }
    entries = []
    for text, (kind, value) in solution.values.items():
        path = parse_path(text)
        assert path is not None
        entries.append((path, kind, value))
    # Room in each list for the indexes that longer paths use; the `contains` items go after them.
    reserve: dict[str, int] = {}
    for path, kind, _ in entries:
        if kind == "missing":
            continue
        for outer, outer_kind, _ in entries:
            n = len(outer.segments)
            inside = outer.root == path.root and n < len(path.segments) and path.segments[:n] == outer.segments
            if outer_kind == "list" and inside and path.segments[n].isascii() and path.segments[n].isdigit():
                reserve[outer.text] = max(reserve.get(outer.text, -1), int(path.segments[n]))
    claimed = solution.values.get("context.agent_id")
    if claimed is not None and isinstance(claimed[1], str) and "agent.id" not in solution.values:
        roots["agent"]["id"] = claimed[1]  # an unbound key's claim is the identity the server uses
    for path, kind, value in sorted(entries, key=lambda e: len(e[0].segments)):
        if kind == "missing":
            continue
        value = deepcopy(value)
        if kind == "list":
            value = [None] * (reserve.get(path.text, -1) + 1) + value
        _place(roots[path.root], path, value)
    return roots["params"], roots["context"], roots["agent"]


def _place(root: dict[str, Any], path: FieldPath, value: Any) -> None:
    cur: Any = root
    segs = path.segments
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        if isinstance(cur, dict):
            if last:
                cur[seg] = value
                return
            nxt = cur.get(seg)
            if not isinstance(nxt, dict | list):
                nxt = cur[seg] = {}
            cur = nxt
        elif isinstance(cur, list) and seg.isascii() and seg.isdigit():
            index = int(seg)
            while len(cur) <= index:
                cur.append(None)
            if last:
                cur[index] = value
                return
            if not isinstance(cur[index], dict | list):
                cur[index] = {}
            cur = cur[index]
        else:
            raise _Clash(path.text)

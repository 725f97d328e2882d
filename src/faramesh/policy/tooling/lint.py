"""Warnings a reviewer needs before a policy goes live.

Each finding has a code, the rule and line it concerns and a message:

- ``unreachable-rule``: earlier rules decide every action this rule could match,
  so it never decides anything (found by case analysis, so it is exact; a rule
  whose reachability cannot be settled is not reported);
- ``allow-before-deny``: an allow rule comes before a deny rule and both match
  some action, so the deny never gets to refuse it (with such an action);
- ``regex-wildcard``: a regular expression in a permissive position (an allow
  rule, or under ``not`` in a deny rule) lets an unbounded run of any
  character through, including ``;``, ``|``, ``&&`` and ``$(``;
- ``regex-backtracking``: a variable-length part inside a repeat with nothing to
  separate the repetitions, which can take exponential time on a crafted input;
- ``default-allow``: ``default: allow`` lets through tools that no rule mentions;
- ``approval-timeout``: a rule requires approval but sets no ``approval.timeout``;
- ``name-field``: ``tool_…``/``operation_…`` conditions test params, not the names;
- ``free-text-deny``: a deny rule relies on ``contains`` (of a string) or ``matches``
  over a field it does not also pin down with ``_in``/``_eq``: values are compared
  exactly, so other case, extra spaces, quoting, ``$IFS``, look-alike letters or
  base64 get the same command past it. Allow the expected values instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faramesh.policy.conditions import NAME_KEYS
from faramesh.policy.model import Effect
from faramesh.policy.names import is_glob
from faramesh.policy.policy import Policy

from . import regexgen
from .explore import Example, Explorer, TooComplex
from .model import Atom, Cond, Formula, NotOf, PolicyModel, RuleModel, atoms, build_model, rule_outcome
from .nameclasses import NameClass, TooManyNames
from .solver import SAT, UNKNOWN, Store

CODES = (
    "unreachable-rule",
    "allow-before-deny",
    "regex-wildcard",
    "regex-backtracking",
    "default-allow",
    "approval-timeout",
    "name-field",
    "free-text-deny",
)
# Characters that let a shell command do more than it says.
SHELL_META = frozenset(";|&$`<>()\n")


@dataclass(frozen=True)
class Finding:
    code: str
    line: int
    column: int
    rule_id: str | None
    message: str
    example: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "line": self.line,
            "column": self.column,
            "rule_id": self.rule_id,
            "message": self.message,
            "example": self.example,
        }

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}:{self.column}"
        rule = f" rule {self.rule_id}:" if self.rule_id else ""
        return f"{where}: {self.code}:{rule} {self.message}"


def lint(policy: Policy, *, ignore: tuple[str, ...] = (), budget: int = 20_000) -> list[Finding]:
    """Every finding, in file order. ``ignore`` lists codes to leave out."""
    model = build_model(policy)
    findings: list[Finding] = []
    for rule in model.rules:
        findings.extend(_approval(rule))
        findings.extend(_name_fields(rule))
        findings.extend(_regexes(rule))
        findings.extend(_free_text_deny(rule, model))
    explorer = Explorer(model, budget=budget)  # one, so its name classes are worked out once
    findings.extend(_unreachable(model, explorer))
    findings.extend(_allow_before_deny(model, explorer))
    findings.extend(_default_allow(model, explorer))
    findings = [f for f in findings if f.code not in ignore]
    return sorted(findings, key=lambda f: (f.line, f.column, CODES.index(f.code)))


def _loc(rule: RuleModel) -> tuple[int, int]:
    return rule.rule.line, rule.rule.column


# -- per rule ---------------------------------------------------------------------------------------------------


def _approval(rule: RuleModel) -> list[Finding]:
    spec = rule.rule.approval
    if rule.effect is not Effect.REQUIRE_APPROVAL or (spec is not None and spec.timeout_seconds is not None):
        return []
    line, column = _loc(rule)
    return [
        Finding(
            "approval-timeout",
            line,
            column,
            rule.id,
            "requires approval but sets no approval.timeout, so a request nobody answers waits for the "
            "server's default (forever if it has none); add e.g. approval: {timeout: 1h}",
        )
    ]


def _name_fields(rule: RuleModel) -> list[Finding]:
    out = []
    for atom in atoms(rule.cond):
        first = atom.key.split(".")[0].split("_")[0] if atom.key else ""
        if atom.path.root == "params" and atom.path.segments[0] in NAME_KEYS and first in NAME_KEYS:
            out.append(
                Finding(
                    "name-field",
                    atom.line,
                    atom.column,
                    rule.id,
                    f"{atom.key} tests params.{atom.path.segments[0]}, not the action's "
                    f"{atom.path.segments[0]} name; to match names write {atom.path.segments[0]}: [...]",
                )
            )
    return out


def _polar_atoms(formula: Formula | None, positive: bool, ops: tuple[str, ...]) -> list[Atom]:
    """Atoms with an operator in ``ops`` whose being true makes the formula true (polarity flips under not)."""
    if formula is None:
        return []
    if isinstance(formula, Cond):
        return [formula.atom] if positive and formula.atom.op in ops else []
    if isinstance(formula, NotOf):
        return _polar_atoms(formula.part, not positive, ops)
    parts = getattr(formula, "parts", ())
    return [a for p in parts for a in _polar_atoms(p, positive, ops)]


def _pins(rule: RuleModel, path: str, ops: tuple[str, ...]) -> bool:
    return any(a.path.text == path for a in _polar_atoms(rule.cond, True, ops))


def _free_text_deny(rule: RuleModel, model: PolicyModel) -> list[Finding]:
    """A deny rule that searches inside free text: a caller-supplied string that neither this rule
    (with ``_in``/``_eq``) nor every allow rule that may take the same tool (with ``_in``/``_eq``/
    ``_matches``) pins down, so a dodged spelling falls through to an allow."""
    if rule.effect is not Effect.DENY:
        return []
    allows = [r for r in model.rules if r.effect is Effect.ALLOW and _may_share_names(r, rule)]
    out = []
    for atom in _polar_atoms(rule.cond, True, ("contains", "matches")):
        path = atom.path.text
        if atom.path.root == "agent" or not isinstance(atom.operand, str):
            continue  # agent fields come from the key, not from the caller
        if _pins(rule, path, ("in", "eq")):
            continue
        if model.default is not Effect.ALLOW and all(_pins(a, path, ("in", "eq", "matches")) for a in allows):
            continue
        how = f"looks for {atom.operand!r} inside" if atom.op == "contains" else f"matches {atom.operand!r} against"
        out.append(
            Finding(
                "free-text-deny",
                atom.line,
                atom.column,
                rule.id,
                f"{atom.key}: this deny rule {how} free text in {atom.path.text}; values are compared exactly, so "
                "other case, extra spaces, quotes, $IFS, look-alike letters or base64 get the same thing past it; "
                f"allow the values you expect instead (e.g. {atom.path.segments[-1]}_in: [...]) and let the rest "
                "fall to default: deny",
            )
        )
    return out


def _permissive_regexes(formula: Formula | None, permissive: bool) -> list[Atom]:
    """`matches` atoms whose being true lets more actions through (polarity flips under not)."""
    if formula is None:
        return []
    if isinstance(formula, Cond):
        return [formula.atom] if permissive and formula.atom.op == "matches" else []
    if isinstance(formula, NotOf):
        return _permissive_regexes(formula.part, not permissive)
    parts = getattr(formula, "parts", ())
    return [a for p in parts for a in _permissive_regexes(p, permissive)]


def _regexes(rule: RuleModel) -> list[Finding]:
    out = []
    # Where a match lets actions through: in an allow rule, or under `not` in a deny rule.
    # (A require_approval rule is left alone: a person still looks at what it matches.)
    allowing = rule.effect is Effect.ALLOW
    candidates = [] if rule.effect is Effect.REQUIRE_APPROVAL else _permissive_regexes(rule.cond, allowing)
    for atom in candidates:
        wild = _wildcard(atom.operand)
        if wild:
            where = "an allow rule" if allowing else "a deny rule's not:"
            out.append(
                Finding(
                    "regex-wildcard",
                    atom.line,
                    atom.column,
                    rule.id,
                    f"{atom.key}: {atom.operand!r} in {where} accepts {wild}, which lets anything through "
                    "(e.g. '; rm -rf /' or '$(curl …)'); spell out the allowed characters, e.g. [\\w./-]+",
                )
            )
    for atom in atoms(rule.cond):
        if atom.op == "matches":
            slow = _backtracking(atom.operand)
            if slow:
                out.append(
                    Finding(
                        "regex-backtracking",
                        atom.line,
                        atom.column,
                        rule.id,
                        f"{atom.key}: {atom.operand!r} has {slow}, which can take exponential time on a "
                        "crafted input; remove the inner repeat or make the alternatives distinct",
                    )
                )
    return out


def _wildcard(pattern: str) -> str | None:
    """A description of the first unbounded repeat over shell metacharacters, or None."""
    try:
        tree = regexgen.parse(pattern)
    except Exception:
        return None
    found: list[str] = []

    def walk(items: Any) -> None:
        for op, av in items:
            name = str(op)
            if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                if regexgen.is_unbounded(av) and _accepts_meta(av[2]):
                    found.append(
                        "an unbounded run of any character"
                        if _is_any(av[2])
                        else "an unbounded run that includes shell metacharacters"
                    )
                walk(av[2])
            elif name == "SUBPATTERN":
                walk(av[3])
            elif name == "BRANCH":
                for branch in av[1]:
                    walk(branch)
            elif name == "ATOMIC_GROUP":
                walk(av)

    walk(tree)
    return found[0] if found else None


def _is_any(items: Any) -> bool:
    return len(items) == 1 and str(items[0][0]) == "ANY"


def _accepts_meta(items: Any) -> bool:
    """Can one repetition of ``items`` start with a shell metacharacter?"""
    if not items:
        return False
    op, av = items[0]
    name = str(op)
    if name == "ANY":
        return True
    if name == "NOT_LITERAL":
        return True
    if name == "LITERAL":
        return chr(av) in SHELL_META
    if name == "IN":
        return any(ch in SHELL_META for ch in regexgen._class_chars(av))
    if name == "SUBPATTERN":
        return _accepts_meta(av[3])
    if name == "BRANCH":
        return any(_accepts_meta(b) for b in av[1])
    return False


def _backtracking(pattern: str) -> str | None:
    """Exponential backtracking: inside an unbounded repeat, a part of variable length
    (a repeat, an optional part, an alternative) that nothing separates from the next
    repetition, so the engine can split the input between them in exponentially many ways."""
    try:
        tree = regexgen.parse(pattern)
    except Exception:
        return None
    found: list[str] = []

    def ambiguous_nesting(body: Any) -> bool:
        # Safe when every inner repeat is cut off by a character it cannot take, which
        # each repetition of the outer body must contain (` -[a-z]+` in `( -[a-z]+)*`).
        separators = regexgen.mandatory_sets(body)
        for inner in regexgen.variable_parts(body):
            if inner is None or not any(sep.isdisjoint(inner) for sep in separators):
                return True
        return False

    def walk(items: Any) -> None:
        for op, av in items:
            name = str(op)
            if name in ("MAX_REPEAT", "MIN_REPEAT"):
                body = av[2]
                if regexgen.is_unbounded(av) and regexgen.variable_parts(body) and ambiguous_nesting(body):
                    found.append("a variable-length part inside a repeat with nothing to tell the repetitions apart")
                walk(body)
            elif name == "SUBPATTERN":
                walk(av[3])
            elif name == "BRANCH":
                for branch in av[1]:
                    walk(branch)

    walk(tree)
    return found[0] if found else None


# -- across rules -----------------------------------------------------------------------------------------------


def _tool_classes(explorer: Explorer, rule: RuleModel) -> list[NameClass]:
    return explorer.classes("tool", rule.tool)


def _op_classes(explorer: Explorer, rule: RuleModel) -> list[NameClass]:
    return explorer.classes("operation", rule.operation)


def _reach(explorer: Explorer, rule: RuleModel, tool: NameClass, op: NameClass) -> tuple[str, list[str]]:
    """Can ``rule`` decide some action of these name classes? (SAT / UNKNOWN / "unsat"), and the earlier rules in the way."""
    status = "unsat"
    names = (tool, op)
    for _, store in explorer.walk(Store(), tool, op, before=rule.index):
        for matched in explorer.match(rule, store, names):
            found = explorer.solver.status(matched).status
            if found == SAT:
                return SAT, []
            if found == UNKNOWN:
                status = UNKNOWN
    return status, [r.id for r in explorer.candidates(tool, op) if r.index < rule.index]


def _unreachable(model: PolicyModel, explorer: Explorer) -> list[Finding]:
    out = []
    for rule in model.rules:
        explorer.restart()
        try:
            statuses = []
            blockers: list[str] = []
            for tool in _tool_classes(explorer, rule):
                for op in _op_classes(explorer, rule):
                    status, earlier = _reach(explorer, rule, tool, op)
                    statuses.append(status)
                    if status == SAT:
                        break
                    blockers.extend(e for e in earlier if e not in blockers)
                if SAT in statuses:
                    break
        except (TooComplex, TooManyNames):
            continue
        if statuses and all(s == "unsat" for s in statuses):
            line, column = _loc(rule)
            by = ", ".join(blockers) if blockers else "no earlier rule; its own conditions contradict each other"
            out.append(
                Finding(
                    "unreachable-rule",
                    line,
                    column,
                    rule.id,
                    f"can never decide anything: every action it matches is decided first by {by}",
                )
            )
    return out


def _allow_before_deny(model: PolicyModel, explorer: Explorer) -> list[Finding]:
    out = []
    rules = model.rules
    for allow in rules:
        if allow.effect is not Effect.ALLOW:
            continue
        for deny in rules[allow.index + 1 :]:
            if deny.effect is not Effect.DENY or not _may_share_names(allow, deny):
                continue
            example = _overlap(allow, deny, explorer.restart())
            # A deny that covers everything the allow matches is the usual "allow this, deny the
            # rest" shape: the allow is a deliberate exception, so only partial overlaps are reported.
            if example is not None and not _covers(deny, allow, explorer.restart()):
                line, column = _loc(allow)
                out.append(
                    Finding(
                        "allow-before-deny",
                        line,
                        column,
                        allow.id,
                        f"allows actions that the later deny rule {deny.id} (line {deny.rule.line}) would refuse, "
                        f"e.g. {_describe(example)}; put the deny rule first if it should win",
                        example.to_dict(),
                    )
                )
    return out


def _may_share_names(a: RuleModel, b: RuleModel) -> bool:
    """False when both rules name exact tools (or operations) and none in common: they never meet."""
    for x, y in ((a.tool, b.tool), (a.operation, b.operation)):
        exact = x is not None and y is not None and not any(is_glob(p) for p in (*x, *y))
        if exact and not set(x or ()) & set(y or ()):
            return False
    return True


def _overlap(allow: RuleModel, deny: RuleModel, explorer: Explorer) -> Example | None:
    try:
        for tool in _tool_classes(explorer, allow):
            if deny.tool is not None and not tool.accepted.intersection(deny.tool):
                continue
            for op in _op_classes(explorer, allow):
                if deny.operation is not None and not op.accepted.intersection(deny.operation):
                    continue
                names = (tool, op)
                for _, store in explorer.walk(Store(), tool, op, before=allow.index):
                    for matched in explorer.match(allow, store, names):
                        for both in explorer.match(deny, matched, names):
                            example = explorer.example(both, tool, op)
                            if (
                                example is not None
                                and example.decision.rule_id == allow.id
                                and rule_outcome(deny, example.inputs()) == "matched"
                            ):
                                return example
    except (TooComplex, TooManyNames):
        return None
    return None


def _covers(deny: RuleModel, allow: RuleModel, explorer: Explorer) -> bool:
    """Does ``deny`` match every action that ``allow`` decides? (False when that cannot be settled.)"""
    try:
        for tool in _tool_classes(explorer, allow):
            for op in _op_classes(explorer, allow):
                names = (tool, op)
                candidate = deny in explorer.candidates(tool, op)
                for _, store in explorer.walk(Store(), tool, op, before=allow.index):
                    for matched in explorer.match(allow, store, names):
                        if not candidate:
                            return False
                        for _escaped in explorer.miss(deny, matched, names):
                            return False
    except (TooComplex, TooManyNames):
        return False
    return True


def _default_allow(model: PolicyModel, explorer: Explorer) -> list[Finding]:
    if model.default is not Effect.ALLOW:
        return []
    explorer.restart()
    named: set[str] = set()
    for each in model.rules:
        named.update(each.tool or ())
    try:
        for tool in explorer.classes("tool"):
            if tool.accepted & named:
                continue
            for op in explorer.classes("operation"):
                for decider, store in explorer.walk(Store(), tool, op):
                    if decider is None:
                        example = explorer.example(store, tool, op)
                        if example is not None and example.decision.rule_id is None:
                            return [
                                Finding(
                                    "default-allow",
                                    1,
                                    1,
                                    None,
                                    f"default: allow lets through every tool no rule mentions, e.g. {tool.witness!r}; "
                                    "prefer default: deny and allow what agents need",
                                    example.to_dict(),
                                )
                            ]
    except (TooComplex, TooManyNames):
        pass
    return []


def _describe(example: Example) -> str:
    text = f"tool={example.tool} operation={example.operation}"
    if example.params:
        text += f" params={example.params}"
    if example.context:
        text += f" context={example.context}"
    return text

"""Test cases for a policy: actions and the decisions they must get.

A cases file is a YAML list (or a mapping with a ``cases:`` list)::

    - name: small refunds go through        # optional
      tool: refund
      operation: process                    # or op
      params: {amount: 50}
      context: {env: prod}                  # optional
      agent: {id: billing-bot, groups: [finance]}   # optional; a string is taken as the id
      now: "2026-01-05T10:00:00+01:00"      # optional; for rules with `during`
      expect: allow                         # allow | deny | require_approval
      reason: Small refunds allowed         # optional; must equal the decision's reason
      rule: small-refunds                   # optional; the rule that must decide (`default` for none)

A file that cannot be read raises :class:`CasesError` with every problem and its line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from faramesh.policy.model import Decision, Effect
from faramesh.policy.parser import YMap, YNode, YScalar, YSeq, parse_yaml
from faramesh.policy.policy import Policy

CASE_KEYS = ("name", "tool", "operation", "op", "params", "context", "agent", "now", "expect", "reason", "rule")
EFFECTS = tuple(e.value for e in Effect)


class CasesError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Case:
    name: str
    tool: str
    operation: str
    expect: Effect
    params: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    agent: dict[str, Any] | None = None
    now: datetime | None = None
    reason: str | None = None
    rule: str | None = None
    line: int = 0


@dataclass(frozen=True)
class CaseResult:
    case: Case
    decision: Decision
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.case.name,
            "line": self.case.line,
            "expect": self.case.expect.value,
            "got": self.decision.effect.value,
            "rule_id": self.decision.rule_id,
            "reason": self.decision.reason,
            "passed": self.passed,
            "failures": list(self.failures),
        }


@dataclass
class CaseReport:
    results: list[CaseResult]

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.passed)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "failed": self.failed, "results": [r.to_dict() for r in self.results]}

    def render(self) -> str:
        """A table (case, expected, got, rule, result), each failure explained, and a summary."""
        header = ("case", "expected", "got", "rule", "result")
        rows = [
            (
                r.case.name,
                r.case.expect.value,
                r.decision.effect.value,
                r.decision.rule_id or "(default)",
                "PASS" if r.passed else "FAIL",
            )
            for r in self.results
        ]
        widths = [min(48, max([len(h)] + [len(row[i]) for row in rows])) for i, h in enumerate(header)]

        def line(cells: tuple[str, ...]) -> str:
            parts = [_cut(c, w).ljust(w) for c, w in zip(cells, widths, strict=True)]
            return "  ".join(parts).rstrip()

        out = [line(header), line(tuple("-" * w for w in widths))]
        for row, result in zip(rows, self.results, strict=True):
            out.append(line(row))
            for failure in result.failures:
                out.append(f"    {failure}")
        out.append("")
        out.append(f"{self.passed} passed, {self.failed} failed, {len(self.results)} total")
        return "\n".join(out)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def run_cases(policy: Policy, cases: list[Case]) -> CaseReport:
    results = []
    for case in cases:
        decision = policy.evaluate(
            tool=case.tool,
            operation=case.operation,
            params=case.params,
            context=case.context,
            agent=case.agent,
            now=case.now,
        )
        failures = []
        if decision.effect is not case.expect:
            failures.append(f"expected {case.expect.value}, got {decision.effect.value}: {decision.reason}")
        if case.reason is not None and decision.reason != case.reason:
            failures.append(f"expected reason {case.reason!r}, got {decision.reason!r}")
        if case.rule is not None and (decision.rule_id or "default") != case.rule:
            failures.append(f"expected rule {case.rule}, got {decision.rule_id or 'default'}")
        results.append(CaseResult(case, decision, tuple(failures)))
    return CaseReport(results)


# -- loading ----------------------------------------------------------------------------------------------------


def load_cases_file(path: str | os.PathLike[str]) -> list[Case]:
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CasesError([f"{source}: cannot read the cases file: {exc}"]) from exc
    return load_cases(text, source)


def load_cases(text: str, source: str = "<cases>") -> list[Case]:
    tree, problems = parse_yaml(text, source)
    errors = [str(p) for p in problems]
    if errors:
        raise CasesError(errors)
    if isinstance(tree, YMap) and tree.get("cases") is not None:
        tree = tree.get("cases")
    if not isinstance(tree, YSeq):
        where = f"{source}:{tree.loc.line}" if tree is not None else source
        raise CasesError([f"{where}: a cases file is a list of cases (or a mapping with a cases: list)"])
    cases: list[Case] = []
    for i, node in enumerate(tree.items):
        case = _case(node, i, source, errors)
        if case is not None:
            cases.append(case)
    if errors:
        raise CasesError(errors)
    return cases


def _case(node: YNode, i: int, source: str, errors: list[str]) -> Case | None:
    where = f"{source}:{node.loc.line}: case {i + 1}"
    if not isinstance(node, YMap):
        errors.append(f"{where}: a case is a mapping with tool, operation, params and expect")
        return None
    before = len(errors)
    for key, loc, _ in node:
        if key not in CASE_KEYS:
            errors.append(f"{source}:{loc.line}: case {i + 1}: unknown key {key!r} (known: {', '.join(CASE_KEYS)})")
    values = {key: _plain(value) for key, _, value in node}

    def text(key: str, required: bool) -> str | None:
        value = values.get(key)
        if value is None:
            if required:
                errors.append(f"{where}: {key} is required")
            return None
        if not isinstance(value, str) or not value:
            errors.append(f"{where}: {key} must be a non-empty string")
            return None
        return value

    tool = text("tool", True)
    operation = text("operation", False) or text("op", False)
    if operation is None and "operation" not in values and "op" not in values:
        errors.append(f"{where}: operation is required")
    expect_text = text("expect", True)
    expect = None
    if expect_text is not None:
        if expect_text not in EFFECTS:
            errors.append(f"{where}: expect must be one of {', '.join(EFFECTS)}, got {expect_text!r}")
        else:
            expect = Effect(expect_text)
    mappings: dict[str, dict[str, Any]] = {}
    for key in ("params", "context"):
        value = values.get(key, {})
        if not isinstance(value, dict):
            errors.append(f"{where}: {key} must be a mapping")
        else:
            mappings[key] = value
    agent = values.get("agent")
    if isinstance(agent, str):
        agent = {"id": agent}
    elif agent is not None and not isinstance(agent, dict):
        errors.append(f"{where}: agent must be a mapping (id, groups, role) or an agent id")
        agent = None
    now = _time(values.get("now"), where, errors)
    reason = text("reason", False)
    rule = values.get("rule")
    if rule is not None and not isinstance(rule, str):
        rule = str(rule)
    name = values.get("name")
    if len(errors) != before or tool is None or operation is None or expect is None:
        return None
    label = str(name) if name is not None else f"{tool}.{operation} #{i + 1}"
    return Case(
        name=label,
        tool=tool,
        operation=operation,
        expect=expect,
        params=mappings.get("params", {}),
        context=mappings.get("context", {}),
        agent=agent,
        now=now,
        reason=reason,
        rule=rule,
        line=node.loc.line,
    )


def _time(value: Any, where: str, errors: list[str]) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    errors.append(f"{where}: now must be an ISO 8601 time such as 2026-01-05T10:00:00+01:00")
    return None


def _plain(node: YNode) -> Any:
    if isinstance(node, YScalar):
        return node.value
    if isinstance(node, YSeq):
        return [_plain(item) for item in node.items]
    return {key: _plain(value) for key, _, value in node}

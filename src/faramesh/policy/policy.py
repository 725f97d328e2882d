"""The compiled policy: load once, evaluate many times.

Evaluation is pure: it reads only its arguments and the compiled rules, never
the clock or any file, and it never raises. Anything unexpected during
evaluation produces a deny.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Protocol

from .compile import CompiledPolicy, CompiledRule, PolicyCompiler
from .conditions import ConditionRecorder, Reporter
from .errors import PolicyError, PolicyProblem
from .model import ApprovalSpec, Decision, Effect, Rule
from .names import normalize_name
from .parser import parse_yaml

_DEFAULT_RISK = "medium"
# Candidate lists remembered per policy for tool names that no rule names exactly.
_GLOB_MEMO_SIZE = 4096
_GLOB_MEMO_NAME_LENGTH = 256
_INVALID_NAMES = Decision(Effect.DENY, "tool and operation must be strings", "high", None)


def _default_decision(effect: Effect) -> Decision:
    return Decision(
        effect=effect,
        reason=f"No rule matched; default is {effect.value}",
        risk=_DEFAULT_RISK,
        rule_id=None,
        approval=ApprovalSpec() if effect is Effect.REQUIRE_APPROVAL else None,
    )


class Recorder(ConditionRecorder, Protocol):
    """What :meth:`Policy.evaluate` tells an observer while it decides (used by `policy explain`).

    For each candidate rule tried, in order: ``condition`` for each of its condition
    nodes (only when the rule got as far as its conditions), then ``rule`` with the
    rule's outcome; finally ``decided`` with the decision returned. Outcomes are
    ``"matched"``, ``"operation"`` (the operation name did not match), ``"during"``
    (outside its time window or no time given), ``"false"``, ``"unknown"`` (conditions
    not decidable: data missing or of the wrong type) or ``"error"`` (evaluation raised;
    the decision is a deny).
    """

    def rule(self, rule: Rule, outcome: str) -> None: ...

    def decided(self, decision: Decision) -> None: ...


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """How one candidate rule fared in :meth:`Policy.explain`; ``outcome`` as in :class:`Recorder`."""

    rule_id: str
    line: int
    outcome: str


@dataclass(frozen=True, slots=True)
class Explanation:
    decision: Decision
    trace: tuple[RuleTrace, ...]


class _RuleTraceRecorder:
    """Keeps the rule outcomes and the decision; ignores conditions."""

    def __init__(self) -> None:
        self.trace: list[RuleTrace] = []
        self.decision: Decision | None = None

    def condition(self, key: str, result: bool | None, value: Any) -> None:
        pass

    def rule(self, rule: Rule, outcome: str) -> None:
        self.trace.append(RuleTrace(rule.id, rule.line, outcome))

    def decided(self, decision: Decision) -> None:
        self.decision = decision


class Policy:
    """A validated, compiled policy. Build one with :meth:`from_yaml` or :meth:`from_file`."""

    __slots__ = (
        "_any_tool",
        "_by_tool",
        "_default_decision",
        "_glob_memo",
        "_rules_by_index",
        "default",
        "description",
        "hash",
        "name",
        "rules",
        "source",
        "source_text",
        "version",
        "warnings",
    )

    def __init__(self, compiled: CompiledPolicy, *, source: str, source_text: str, warnings: list[str]) -> None:
        self.source: str = source
        self.source_text: str = source_text
        self.rules: tuple[Rule, ...] = tuple(compiled.rules)
        self.default: Effect = compiled.default
        self.name: str | None = compiled.name
        self.version: str | int | None = compiled.version
        self.description: str | None = compiled.description
        self.warnings: list[str] = warnings
        self.hash: str = _policy_hash(self.rules, self.default)
        self._by_tool: dict[str, tuple[CompiledRule, ...]] = compiled.by_tool
        self._any_tool: tuple[CompiledRule, ...] = compiled.any_tool
        self._glob_memo: dict[str, tuple[CompiledRule, ...]] = {}
        self._default_decision: Decision = _default_decision(compiled.default)
        self._rules_by_index: dict[int, Rule] = {
            cr.index: rule for cr, rule in zip(compiled.compiled, compiled.rules, strict=True)
        }

    # -- loading

    @classmethod
    def from_yaml(cls, text: str | bytes, source: str = "<string>") -> Policy:
        """Parse and compile ``text``. Raises :class:`PolicyError` listing every problem found."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PolicyError(
                    [PolicyProblem(source, 0, 0, "", f"the file is not UTF-8: {exc}", "save the policy as UTF-8")]
                ) from exc
        if not isinstance(text, str):
            raise TypeError(f"policy text must be str, not {type(text).__name__}")
        tree, problems = parse_yaml(text, source)
        reporter = Reporter(source)
        reporter.problems.extend(problems)
        if tree is None and problems:  # the YAML itself could not be read
            raise PolicyError(reporter.problems)
        compiled = PolicyCompiler(reporter).compile(tree)
        if reporter.problems:
            raise PolicyError(sorted(reporter.problems, key=lambda p: (p.line, p.column)))
        return cls(compiled, source=source, source_text=text, warnings=reporter.warnings)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Policy:
        """Read and compile a policy file; the path becomes the policy's ``source``."""
        source = os.fspath(path)
        try:
            with open(source, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise PolicyError(
                [
                    PolicyProblem(
                        source,
                        0,
                        0,
                        "",
                        f"cannot read the policy file: {exc.strerror}",
                        "check the path and its permissions",
                    )
                ]
            ) from exc
        return cls.from_yaml(data, source=source)

    # -- evaluation

    def evaluate(
        self,
        *,
        tool: str,
        operation: str,
        params: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        agent: Mapping[str, Any] | None = None,
        now: datetime | None = None,
        recorder: Recorder | None = None,
    ) -> Decision:
        """Decide one action. The first matching rule wins; otherwise the policy default applies.

        Never raises: invalid input or an unexpected error inside a condition yields a deny.
        A ``recorder`` is told each rule tried, each condition's result and the decision
        (see :class:`Recorder`); without one, the loop only pays a few ``is None`` tests.
        """
        if not isinstance(tool, str) or not isinstance(operation, str):
            if recorder is not None:
                recorder.decided(_INVALID_NAMES)
            return _INVALID_NAMES
        cr = None
        try:
            tool_n = normalize_name(tool)
            op_n = normalize_name(operation)
            env = (params, context, agent, tool_n, op_n)
            candidates = self._by_tool.get(tool_n)
            if candidates is None:
                candidates = self._glob_candidates(tool_n)
            for cr in candidates:
                if cr.operation is not None and not cr.operation(op_n):
                    if recorder is not None:
                        recorder.rule(self._rules_by_index[cr.index], "operation")
                    continue
                if cr.window is not None and (now is None or not cr.window.contains(now)):
                    if recorder is not None:
                        recorder.rule(self._rules_by_index[cr.index], "during")
                    continue
                if cr.cond is not None:
                    if recorder is None:
                        if cr.cond(env) is not True:
                            continue
                    else:
                        result = cr.trace(env, recorder) if cr.trace is not None else cr.cond(env)
                        if result is not True:
                            outcome = "false" if result is False else "unknown"
                            recorder.rule(self._rules_by_index[cr.index], outcome)
                            continue
                if recorder is not None:
                    recorder.rule(self._rules_by_index[cr.index], "matched")
                    recorder.decided(cr.decision)
                return cr.decision
        except Exception as exc:  # fail closed, whatever went wrong
            failed = Decision(Effect.DENY, f"Policy evaluation failed ({type(exc).__name__}); denied", "high", None)
            if recorder is not None:
                if cr is not None:
                    recorder.rule(self._rules_by_index[cr.index], "error")
                recorder.decided(failed)
            return failed
        if recorder is not None:
            recorder.decided(self._default_decision)
        return self._default_decision

    def _glob_candidates(self, tool_n: str) -> tuple[CompiledRule, ...]:
        """The glob and any-tool rules that match a tool no rule names exactly, remembered per name.

        The memo only caches a pure function of the (immutable) rules, so evaluation
        stays deterministic; it is bounded, and long names are not remembered.
        """
        found = self._glob_memo.get(tool_n)
        if found is None:
            found = tuple(cr for cr in self._any_tool if cr.tool is None or cr.tool(tool_n))
            if len(self._glob_memo) < _GLOB_MEMO_SIZE and len(tool_n) <= _GLOB_MEMO_NAME_LENGTH:
                self._glob_memo[tool_n] = found
        return found

    def explain(
        self,
        *,
        tool: str,
        operation: str,
        params: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        agent: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Explanation:
        """Like :meth:`evaluate`, and also say what happened to each candidate rule (for `policy explain`).

        Only candidate rules appear in the trace: rules whose tool condition matches the tool
        (or that have none), up to the one that decided. It is :meth:`evaluate` with a recorder.
        """
        recorder = _RuleTraceRecorder()
        decision = self.evaluate(
            tool=tool, operation=operation, params=params, context=context, agent=agent, now=now, recorder=recorder
        )
        return Explanation(decision, tuple(recorder.trace))

    # -- description

    def to_dict(self) -> dict[str, Any]:
        """The normalised policy as JSON-ready data (for `GET /v1/policy`)."""
        return {
            "source": self.source,
            "hash": self.hash,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "default": self.default.value,
            "rules": [rule.to_dict() for rule in self.rules],
            "warnings": list(self.warnings),
        }

    def __repr__(self) -> str:
        counts = f"rules={len(self.rules)} default={self.default.value}"
        return f"<Policy {self.source!r} {counts} hash={self.hash[:12]}>"


def _policy_hash(rules: tuple[Rule, ...], default: Effect) -> str:
    body = {"default": default.value, "rules": [dict(rule.spec) for rule in rules]}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


STARTER_RESOURCE = "starter.yaml"


def load_starter_policy() -> Policy:
    """The built-in starter policy shipped with the package (``faramesh/policy/starter.yaml``)."""
    text = resources.files(__package__).joinpath(STARTER_RESOURCE).read_text(encoding="utf-8")
    return Policy.from_yaml(text, source="<starter policy>")

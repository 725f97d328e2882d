"""Validate a policy file: every problem with its line, column, key and a fix."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from faramesh.policy.errors import PolicyError, PolicyProblem
from faramesh.policy.policy import Policy


@dataclass
class ValidationResult:
    source: str
    policy: Policy | None
    problems: list[PolicyProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.policy is not None

    def render(self) -> list[str]:
        """The lines `faramesh policy validate` prints (problems go to stderr, the summary to stdout)."""
        if self.policy is None:
            return [str(p) for p in self.problems] + [f"{self.source}: {len(self.problems)} problem(s)"]
        p = self.policy
        lines = [f"{self.source}: valid, {len(p.rules)} rule(s), default {p.default.value}, hash {p.hash[:16]}"]
        lines.extend(f"warning: {w}" for w in p.warnings)
        return lines

    def to_dict(self) -> dict[str, Any]:
        """What `faramesh policy validate --json` prints."""
        p = self.policy
        return {
            "source": self.source,
            "valid": p is not None,
            "rules": len(p.rules) if p is not None else None,
            "default": p.default.value if p is not None else None,
            "hash": p.hash if p is not None else None,
            "warnings": list(p.warnings) if p is not None else [],
            "problems": [asdict(problem) for problem in self.problems],
        }


def validate_text(text: str | bytes, source: str = "<string>") -> ValidationResult:
    try:
        return ValidationResult(source, Policy.from_yaml(text, source=source))
    except PolicyError as exc:
        return ValidationResult(source, None, list(exc.problems))


def validate_file(path: str | os.PathLike[str]) -> ValidationResult:
    source = os.fspath(path)
    try:
        return ValidationResult(source, Policy.from_file(source))
    except PolicyError as exc:
        return ValidationResult(source, None, list(exc.problems))

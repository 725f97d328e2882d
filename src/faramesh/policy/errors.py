"""Policy load errors: every problem carries its place in the file and a fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy file.

    ``line`` and ``column`` are 1-based; 0 means the position is unknown
    (for example a problem with the file as a whole).
    """

    source: str
    line: int
    column: int
    key: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}:{self.column}"
        key = f" {self.key}:" if self.key else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}:{key} {self.message}{hint}"


class PolicyError(Exception):
    """A policy could not be loaded. ``problems`` lists everything found, in file order."""

    def __init__(self, problems: list[PolicyProblem]) -> None:
        self.problems: list[PolicyProblem] = list(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        if not self.problems:
            return "invalid policy"
        return "\n".join(str(p) for p in self.problems)

    def __str__(self) -> str:
        return self._render()

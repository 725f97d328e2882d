"""What a verification found: problems, each named by record and subject, and the totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from faramesh.audit.checkpoints import Checkpoint
from faramesh.storage.audit_log import GENESIS_HASH


@dataclass(frozen=True)
class Problem:
    """One thing that does not match, named by record (seq) and subject (action or key)."""

    seq: int | None
    message: str
    action_id: str | None = None
    key_id: str | None = None
    kind: str = "chain"  # chain | state | checkpoint | file

    def line(self) -> str:
        prefix = "audit chain broken" if self.kind in ("chain", "checkpoint", "file") else "audit state mismatch"
        where = f" at seq {self.seq}" if self.seq is not None else ""
        if self.action_id is not None:
            where += f" (action {self.action_id})"
        elif self.key_id is not None:
            where += f" (key {self.key_id})"
        return f"{prefix}{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "action_id": self.action_id,
            "key_id": self.key_id,
            "kind": self.kind,
            "message": self.message,
            "line": self.line(),
        }


@dataclass
class VerifyReport:
    records: int = 0
    first_seq: int | None = None
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    anchored: bool = True  # the chain was checked from the genesis hash
    actions: int | None = None  # actions checked against their records (database only)
    keys: int | None = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    omitted: int = 0  # problems found beyond the reporting limit
    max_problems: int = 100

    @property
    def ok(self) -> bool:
        return not self.problems and not self.omitted

    def add(self, problem: Problem) -> None:
        if len(self.problems) < self.max_problems:
            self.problems.append(problem)
        else:
            self.omitted += 1

    def withdraw(self, problem: Problem) -> None:
        """Take back a problem that later records explained otherwise."""
        for i in range(len(self.problems) - 1, -1, -1):
            if self.problems[i] is problem:
                del self.problems[i]
                return
        self.omitted = max(0, self.omitted - 1)

    def summary(self) -> str:
        if self.ok:
            return f"audit log intact: {self.records} records, head seq {self.last_seq} hash {self.last_hash}"
        total = len(self.problems) + self.omitted
        return f"audit log NOT intact: {total} problem(s) in {self.records} records"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "first_seq": self.first_seq,
            "head_seq": self.last_seq,
            "head_hash": self.last_hash,
            "anchored": self.anchored,
            "actions": self.actions,
            "keys": self.keys,
            "checkpoints": [str(c) for c in self.checkpoints],
            "problems": [p.to_dict() for p in self.problems],
            "omitted_problems": self.omitted,
        }

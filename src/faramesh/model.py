"""Plain value types shared by every layer: statuses, roles and the caller's identity."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Status(str, Enum):
    ALLOWED = "allowed"
    DENIED = "denied"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # withdrawn by its agent or an admin, or an approval nobody picked up
    EXECUTING = "executing"  # the agent took its single-use start and is running it
    OUTCOME_UNKNOWN = "outcome_unknown"  # started, no result within the execution lease: reconcile it


# Statuses from which an agent may execute (start, or report a result straight away). They
# alone carry a permit.
EXECUTABLE = frozenset({Status.ALLOWED, Status.APPROVED})
# Statuses a result report is accepted from: before a start (the seed's flow), while
# running, and late, after the lease ran out (the agent that ran it knows best).
REPORTABLE = EXECUTABLE | {Status.EXECUTING, Status.OUTCOME_UNKNOWN}
# Statuses that will never change again.
FINAL = frozenset({Status.DENIED, Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
# Statuses an agent may withdraw (cancel): held for a person, or approved and not yet run.
CANCELLABLE = frozenset({Status.PENDING_APPROVAL, Status.APPROVED})


class Role(str, Enum):
    AGENT = "agent"
    APPROVER = "approver"
    ADMIN = "admin"


@dataclass(frozen=True)
class Identity:
    """Who is calling: resolved from an API key, never from what the client claims."""

    key_id: str
    role: Role
    name: str = ""
    agent_id: str | None = None  # set when the key is bound to one agent
    groups: tuple[str, ...] = field(default_factory=tuple)

    @property
    def can_decide(self) -> bool:
        return self.role in (Role.APPROVER, Role.ADMIN)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def label(self) -> str:
        """How this identity appears in the audit log and on actions."""
        return f"key:{self.key_id}" + (f" ({self.name})" if self.name else "")

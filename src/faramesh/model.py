"""Plain value types shared by every layer: statuses, roles and the caller's identity."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


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


PERSON_PREFIX = "person:"


def person_id(issuer: str, subject: str) -> str:
    """The stable id of the person an identity provider knows as `subject`: the same on
    every sign-in, from the dashboard or from chat, and never equal to an API key's id."""
    digest = hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()
    return PERSON_PREFIX + digest[:32]


def is_person_id(principal: str) -> bool:
    return principal.startswith(PERSON_PREFIX)


@dataclass(frozen=True)
class Person:
    """Someone signed in through the company's identity provider (OpenID Connect)."""

    issuer: str
    subject: str
    email: str | None = None
    name: str = ""

    @property
    def id(self) -> str:
        return person_id(self.issuer, self.subject)

    def to_dict(self) -> dict[str, Any]:
        """How the audit log, the approvals list and webhooks name the person."""
        return {"issuer": self.issuer, "subject": self.subject, "email": self.email, "name": self.name}


@dataclass(frozen=True)
class Identity:
    """Who is calling: resolved from an API key or a dashboard sign-in, never from what the client claims.

    `key_id` is the principal's id: an API key's id, or for a person signed in with single
    sign-on their `person_id` ("person:…"). Votes, grants and separation of duties compare it,
    so one person is one approver however many sessions (or chat accounts) they use.
    """

    key_id: str
    role: Role
    name: str = ""
    agent_id: str | None = None  # set when the key is bound to one agent
    groups: tuple[str, ...] = field(default_factory=tuple)
    person: Person | None = None  # set for a person signed in with single sign-on

    @property
    def can_decide(self) -> bool:
        return self.role in (Role.APPROVER, Role.ADMIN)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def label(self) -> str:
        """How this identity appears in the audit log and on actions."""
        if self.person is not None:
            shown = self.person.email or self.person.subject
            named = self.name and self.name != shown
            return f"person:{shown}" + (f" ({self.name})" if named else "")
        return f"key:{self.key_id}" + (f" ({self.name})" if self.name else "")


@dataclass(frozen=True, slots=True)
class Action:
    """One governed action as stored: what was asked, what was decided, where it stands.

    The service passes these between its modules and to `faramesh.service.views`, which
    alone turns them into the wire format. JSON fields (`params`, `context`, `result`, …)
    stay the encoded text they are stored as; views decode them.
    """

    id: str
    status: str
    decision: str
    reason: str
    risk_level: str
    policy_hash: str
    request_hash: str
    tool: str
    operation: str
    params: str  # JSON
    context: str  # JSON
    agent_id: str
    submitted_by: str  # the key (or person) id that submitted it
    created_at: float
    updated_at: float
    version: int = 1
    rule_id: str | None = None
    original_params: str | None = None  # JSON; set when an approver approved edited params
    shadow_decision: str | None = None
    shadow_rule_id: str | None = None
    shadow_policy_hash: str | None = None
    idempotency_key: str | None = None
    approval_token: str | None = None
    approval_quorum: int = 1
    approval_groups: str | None = None  # JSON list; None: any approver
    expires_at: float | None = None
    decided_by: str | None = None
    decision_reason: str | None = None
    result: str | None = None  # JSON
    error: str | None = None
    submitted_hash: str | None = None  # the request hash as submitted (re-attach matches on it)
    agent_seen_at: float | None = None
    picked_up_at: float | None = None
    lapses_at: float | None = None
    permit: str | None = None  # the permit last issued (compact JWS)
    permit_expires_at: float | None = None
    started_at: float | None = None
    lease_expires_at: float | None = None
    seq: int | None = None  # the row's insertion order; None until read back

"""What the repositories hand back and take: the shapes of their rows, the actions
filter and the delivery states. No SQL here, so the in-memory repositories
(`faramesh.storage.memory`) share these types with the SQL ones.

An action is a `faramesh.model.Action` from both. Other rows are read by attribute
(`row.status`): the SQL repositories return the driver's rows as they are, the memory
ones named tuples with the same fields, and each protocol here names those columns
and their Python types (a nullable column is `... | None`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from faramesh.model import Action

__all__ = [
    "DELIVERED",
    "FAILED",
    "PENDING",
    "Action",
    "ActionFilter",
    "ApiKeyRow",
    "AuditRow",
    "DeliveryRow",
    "SameCall",
    "WebhookRow",
]

# The states of a webhook delivery.
PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


@dataclass(frozen=True)
class ActionFilter:
    """What a list of actions is narrowed to; None means no filter."""

    submitted_by: str | None = None
    status: str | None = None
    tool: str | None = None
    agent_id: str | None = None
    risk: str | None = None
    id_prefix: str | None = None
    since: float | None = None
    until: float | None = None


class SameCall(NamedTuple):
    """Who submitted an action and under which Idempotency-Key (`find_same_call_in`)."""

    id: str
    submitted_by: str
    idempotency_key: str | None


class ApiKeyRow(Protocol):
    """A row of the api_keys table (the secret is stored only as its hash)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def agent_id(self) -> str | None: ...
    @property
    def groups(self) -> str: ...  # JSON list
    @property
    def key_hash(self) -> str: ...
    @property
    def prefix(self) -> str: ...
    @property
    def created_at(self) -> float: ...
    @property
    def revoked_at(self) -> float | None: ...


class WebhookRow(Protocol):
    """A row of the webhooks table: a receiver added through the admin API."""

    @property
    def id(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def secret(self) -> str: ...
    @property
    def events(self) -> str: ...  # JSON list of event types, or ["*"]
    @property
    def format(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def created_by(self) -> str | None: ...
    @property
    def created_at(self) -> float: ...


class DeliveryRow(Protocol):
    """A row of the webhook_deliveries table: one event for one receiver, and its attempts."""

    @property
    def id(self) -> int: ...
    @property
    def webhook_id(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def event_seq(self) -> int: ...
    @property
    def action_id(self) -> str | None: ...
    @property
    def payload(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def last_status(self) -> int | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def next_attempt_at(self) -> float: ...
    @property
    def created_at(self) -> float: ...
    @property
    def delivered_at(self) -> float | None: ...


class AuditRow(Protocol):
    """A row of the audit_log table: one sealed record of the chain."""

    @property
    def seq(self) -> int: ...
    @property
    def ts(self) -> float: ...
    @property
    def event(self) -> str: ...
    @property
    def action_id(self) -> str | None: ...
    @property
    def actor(self) -> str | None: ...
    @property
    def data(self) -> str: ...  # canonical JSON
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...

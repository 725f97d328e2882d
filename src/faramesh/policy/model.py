"""The values a policy produces: effects, decisions, approval and limit specs, rules."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .values import MISSING, FieldPath, is_number


class Effect(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REQUIRE_APPROVAL = "require_approval"


RISK_LEVELS = ("low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class ApprovalSpec:
    """How a ``require_approval`` decision is to be approved."""

    timeout_seconds: float | None = None
    quorum: int = 1
    approvers: tuple[str, ...] = ()
    # Nudges while it waits: remind the approvers, then escalate to the names in escalate_to.
    remind_after_seconds: float | None = None
    escalate_after_seconds: float | None = None
    escalate_to: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "timeout_seconds": self.timeout_seconds,
            "quorum": self.quorum,
            "approvers": list(self.approvers),
        }
        if self.remind_after_seconds is not None:
            out["remind_after_seconds"] = self.remind_after_seconds
        if self.escalate_after_seconds is not None:
            out["escalate_after_seconds"] = self.escalate_after_seconds
            out["escalate_to"] = list(self.escalate_to)
        return out


def _key_value(path: FieldPath, params: Any, context: Any, agent: Any) -> str | None:
    value = path.resolve(params=params, context=context, agent=agent)
    if isinstance(value, str):
        return value if value else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


@dataclass(frozen=True, slots=True)
class RateLimitSpec:
    """At most ``max`` matching actions per ``per_seconds`` for each value of ``key``.

    The policy only describes the limit; the service counts usage and turns the
    decision into a deny when the limit is exceeded.
    """

    max: int
    per_seconds: float
    key: str
    limit_id: str = ""
    key_path: FieldPath = field(default=FieldPath("agent", ("id",)), repr=False, compare=False)

    def key_value(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        agent: Mapping[str, Any] | None = None,
    ) -> str | None:
        """The bucket this action counts against; None when the key is missing or not a string/int."""
        return _key_value(self.key_path, params, context, agent)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "rate_limit",
            "id": self.limit_id,
            "max": self.max,
            "per_seconds": self.per_seconds,
            "key": self.key,
        }


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """The sum of ``sum_field`` over matching actions stays at or below ``max`` per ``per_seconds``.

    Like :class:`RateLimitSpec`, the service does the accounting.
    """

    sum_field: str
    max: float
    per_seconds: float
    key: str
    limit_id: str = ""
    key_path: FieldPath = field(default=FieldPath("agent", ("id",)), repr=False, compare=False)
    sum_path: FieldPath | None = field(default=None, repr=False, compare=False)

    def key_value(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        agent: Mapping[str, Any] | None = None,
    ) -> str | None:
        """The bucket this action counts against; None when the key is missing or not a string/int."""
        return _key_value(self.key_path, params, context, agent)

    def amount(self, params: Mapping[str, Any] | None) -> float | None:
        """The amount this action adds to the budget.

        None when the field is missing, not a finite int/float (bools and numeric
        strings do not count) or negative; the service must then deny.
        """
        path = self.sum_path or FieldPath("params", tuple(self.sum_field.split(".")))
        value = path.resolve(params=params)
        if value is MISSING or not is_number(value) or value < 0:
            return None
        try:
            return float(value)
        except OverflowError:  # an int too large for a float cannot be accounted for
            return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "budget",
            "id": self.limit_id,
            "sum": self.sum_field,
            "max": self.max,
            "per_seconds": self.per_seconds,
            "key": self.key,
        }


LimitSpec = RateLimitSpec | BudgetSpec


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of evaluating one action against a policy."""

    effect: Effect
    reason: str
    risk: str
    rule_id: str | None
    approval: ApprovalSpec | None = None
    limits: tuple[LimitSpec, ...] = ()

    @staticmethod
    def key_value(
        spec: LimitSpec,
        *,
        params: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        agent: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Resolve a limit's key path (e.g. ``agent.id``) for this action; None when unresolvable."""
        return spec.key_value(params=params, context=context, agent=agent)

    def to_dict(self) -> dict[str, Any]:
        return {
            "effect": self.effect.value,
            "reason": self.reason,
            "risk": self.risk,
            "rule_id": self.rule_id,
            "approval": self.approval.to_dict() if self.approval else None,
            "limits": [limit.to_dict() for limit in self.limits],
        }


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule. ``spec`` is its normalised form (what the policy hash covers)."""

    id: str
    effect: Effect
    reason: str
    risk: str
    line: int
    column: int = 0
    description: str | None = None
    approval: ApprovalSpec | None = None
    limits: tuple[LimitSpec, ...] = ()
    spec: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def decision(self) -> Decision:
        return Decision(self.effect, self.reason, self.risk, self.id, self.approval, self.limits)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description of the rule (its normalised form plus where it was written)."""
        out = dict(self.spec)
        out["line"] = self.line
        if self.description is not None:
            out["description"] = self.description
        return out

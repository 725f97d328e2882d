"""The wire format: how an action, its votes and its events look in the API, the
events and the dashboard. The only code that builds it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from faramesh.audit import AuditRecord
from faramesh.model import EXECUTABLE, Identity, Status
from faramesh.policy import Effect
from faramesh.service import presence
from faramesh.service.approvals import counted_approvals, vote_counts

# How the published faramesh-sdk names a decision (as /v1/gate/decide answers).
GATE_OUTCOMES = {"allow": "EXECUTE", "require_approval": "ABSTAIN", "deny": "HALT"}


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def to_api(
    row: Any,
    identity: Identity | None,
    approval_rows: Sequence[Any] | None = None,
    *,
    counted: int | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The action as the API shows it. `counted` (or `approval_rows`, to count from) gives
    `approval.counted`, the votes that count toward the quorum now; `now` (the service's
    clock) decides whether the agent counts as waiting."""
    status = Status(row.status)
    if approval_rows is not None:
        counted = counted_approvals(approval_rows, row.request_hash)
    human_denial = status is Status.DENIED and row.decision_reason
    data: dict[str, Any] = {
        "id": row.id,
        "status": status.value,
        "decision": row.decision,
        "reason": row.decision_reason if human_denial else row.reason,
        "policy_reason": row.reason,
        # Read by the published faramesh-sdk, which compares them with /v1/gate/decide.
        "outcome": GATE_OUTCOMES.get(row.decision),
        "reason_code": row.rule_id or "default",
        "risk_level": row.risk_level,
        "rule_id": row.rule_id,
        "policy_hash": row.policy_hash,
        "request_hash": row.request_hash,
        "tool": row.tool,
        "operation": row.operation,
        "params": orjson.loads(row.params),
        "original_params": orjson.loads(row.original_params) if row.original_params else None,
        "context": orjson.loads(row.context),
        "agent_id": row.agent_id,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "decided_by": row.decided_by,
        "decision_reason": row.decision_reason,
        "result": orjson.loads(row.result) if row.result is not None else None,
        "error": row.error,
        "version": row.version,
    }
    data |= _shadow_view(row)
    if status in EXECUTABLE and row.permit is not None:
        # Only while it may still run: denied, held, cancelled, expired and started actions carry none.
        data["permit"] = row.permit
        data["permit_expires_at"] = iso(row.permit_expires_at)
    if row.started_at is not None:
        data["execution"] = {"started_at": iso(row.started_at), "lease_expires_at": iso(row.lease_expires_at)}
    data["presence"] = _presence_view(row, now)
    if row.decision == Effect.REQUIRE_APPROVAL.value:
        data["approval"] = _approval_view(row, counted)
    if approval_rows is not None:
        data["approvals"] = [_vote_view(a, row.request_hash) for a in approval_rows]
    return for_caller(data, row, identity)


def for_caller(public: dict[str, Any], row: Any, identity: Identity | None) -> dict[str, Any]:
    """The public view (identity None, as events carry it) as `identity` sees it: those who
    may decide a held action also get its approval token."""
    if identity is not None and identity.can_decide and row.status == Status.PENDING_APPROVAL.value:
        return public | {"approval_token": row.approval_token}
    return public


def _shadow_view(row: Any) -> dict[str, Any]:
    # Only actions decided beside a shadow policy carry these fields.
    shadow_decision = getattr(row, "shadow_decision", None)
    if shadow_decision is None:
        return {}
    return {
        "shadow_decision": shadow_decision,
        "shadow_rule_id": row.shadow_rule_id,
        "shadow_policy_hash": row.shadow_policy_hash,
    }


def _approval_view(row: Any, counted: int | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "quorum": row.approval_quorum,
        "approvers": orjson.loads(row.approval_groups) if row.approval_groups else [],
        "expires_at": iso(row.expires_at),
        # An approval nobody picked up by then is cancelled (see service/presence.py).
        "lapses_at": iso(row.lapses_at) if row.picked_up_at is None else None,
        "picked_up_at": iso(row.picked_up_at),
    }
    if counted is not None:
        view["counted"] = counted
    return view


def _presence_view(row: Any, now: float | None) -> dict[str, Any]:
    seen = row.agent_seen_at
    return {
        "agent_waiting": now is not None and presence.agent_waiting(row, now),
        "agent_seen_at": iso(seen),
    }


def _vote_view(vote: Any, current_hash: str) -> dict[str, Any]:
    person = getattr(vote, "approver_person", None)
    return {
        "approver": vote.approver_label,
        # For a person signed in with single sign-on: {issuer, subject, email, name}; null for a key.
        "person": orjson.loads(person) if person else None,
        "approve": bool(vote.approve),
        "reason": vote.reason,
        "at": iso(vote.created_at),
        "request_hash": vote.request_hash,
        # Does this vote count now? The same rule as the quorum.
        "counts": vote_counts(approve=vote.approve, vote_hash=vote.request_hash, current_hash=current_hash),
    }


def event_view(record: AuditRecord) -> dict[str, Any]:
    """One audit record as GET /v1/actions/{id}/events shows it."""
    return record.to_dict() | {"at": iso(record.ts)}

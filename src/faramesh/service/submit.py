"""Submit: validate a request, let the policy decide, reserve limits and record the
action with its audit record in one transaction."""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import orjson

from faramesh import audit
from faramesh.canonical import request_hash
from faramesh.errors import Conflict, InvalidInput
from faramesh.model import Action, Identity, Status
from faramesh.policy import Decision, Effect, Policy
from faramesh.service import execution, grants, limits, permits, reattach
from faramesh.service.agents import resolve_agent
from faramesh.service.permit_keys import SigningKey
from faramesh.shadow import ShadowDecision, shadow_decide
from faramesh.storage import DuplicateRow
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories
from faramesh.validation import check_json_object, normalize_name, refuse_nul

if TYPE_CHECKING:
    from faramesh.service.governor import Governor

log = logging.getLogger("faramesh.service")

MAX_IDEMPOTENCY_KEY = 200  # the column's width

_STATUS_OF = {
    Effect.ALLOW: Status.ALLOWED,
    Effect.DENY: Status.DENIED,
    Effect.REQUIRE_APPROVAL: Status.PENDING_APPROVAL,
}


@dataclass
class Submission:
    tool: str
    operation: str
    params: dict[str, Any]
    context: dict[str, Any]
    agent_id: str | None = None  # top-level claim (published faramesh-sdk)
    idempotency_key: str | None = None
    reattach: bool = True  # False: never pick up an identical held action (see reattach.py)


@dataclass(frozen=True)
class Submitted:
    """What submit wrote (or found, for a repeated Idempotency-Key)."""

    row: Any
    created: bool
    seq: int
    decision: Decision
    shadow: ShadowDecision | None
    reattached: bool = False  # an identical held action was picked up instead
    granted_seq: int | None = None  # the audit seq of an approval by a standing grant


def _agent(identity: Identity, agent_id: str) -> dict[str, Any]:
    return {"id": agent_id, "groups": list(identity.groups), "role": identity.role.value}


def evaluate(policy: Policy, now: float, identity: Identity, sub: Submission) -> tuple[Decision, str, str]:
    """Validate and evaluate without recording: (decision, agent_id, request_hash)."""
    sub.tool = normalize_name(sub.tool, "tool")
    sub.operation = normalize_name(sub.operation, "operation")
    sub.params = check_json_object(sub.params, "params")
    sub.context = check_json_object(sub.context, "context")
    agent_id = resolve_agent(identity, sub)
    try:
        decision = policy.evaluate(
            tool=sub.tool,
            operation=sub.operation,
            params=sub.params,
            context=sub.context,
            agent=_agent(identity, agent_id),
            now=datetime.fromtimestamp(now, UTC),
        )
    except Exception:  # fail closed: an evaluation error never allows
        log.exception("policy evaluation failed; denying")
        decision = Decision(
            effect=Effect.DENY,
            reason="Policy evaluation failed; denied for safety",
            risk="high",
            rule_id=None,
            approval=None,
            limits=(),
        )
    rhash = request_hash(
        agent_id=agent_id, tool=sub.tool, operation=sub.operation, params=sub.params, context=sub.context
    )
    return decision, agent_id, rhash


def check_idempotency_key(key: Any) -> None:
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY):
        raise InvalidInput(f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} characters", field="Idempotency-Key")
    refuse_nul(key, "Idempotency-Key")


@dataclass(frozen=True)
class _Request:
    """A validated, evaluated submission and what it is recorded with."""

    identity: Identity
    sub: Submission
    decision: Decision
    agent_id: str
    rhash: str
    policy_hash: str
    shadow: ShadowDecision | None
    action_id: str
    now: float
    permit: permits.Issued | None  # signed before the transaction, used if it stays allowed
    # For a held action a standing grant may approve at once: its permit's key, fetched
    # before the transaction (fetching may write).
    signing: SigningKey | None = None


def submit(g: Governor, identity: Identity, sub: Submission) -> Submitted:
    req = prepare(g, identity, sub)
    write = g.store.write_grouped if locks_no_existing_row(req.decision) else g.store.write
    try:
        written = write(lambda conn: _txn(g, conn, req))
    except DuplicateRow:
        # Two submits raced on one Idempotency-Key (PostgreSQL): the other one won.
        if sub.idempotency_key is None:
            raise
        written = write(lambda conn: _txn(g, conn, req))
    return _submitted(req, written)


def locks_no_existing_row(decision: Decision) -> bool:
    """Whether recording this decision only reads, inserts and appends to the audit log,
    so that it may share a transaction with other submits (`Store.write_grouped`). A
    held action may re-attach to an existing one or be approved by a standing grant, and
    limits update their counters: those lock rows that exist already."""
    if decision.effect is Effect.REQUIRE_APPROVAL:
        return False
    return decision.effect is Effect.DENY or not decision.limits


async def submit_async(g: Governor, identity: Identity, sub: Submission) -> Submitted:
    """`submit` for the event loop: the work before and after the write is computation,
    so it runs on the loop, and only the write is awaited (`Store.write_async`), with no
    worker thread per submit. On SQLite the write joins the loop's own group commit. On
    PostgreSQL a write that may be grouped joins the writer thread's group, any other
    runs in a worker thread. When the permit keys are due a reload (a database read),
    the preparation runs in a worker thread, never on the loop."""
    key = g.signing_keys.loaded_key()
    if key is None:
        req = await anyio.to_thread.run_sync(prepare, g, identity, sub)
    else:
        req = prepare(g, identity, sub, key=key)
    grouped = locks_no_existing_row(req.decision)
    try:
        written = await g.store.write_async(lambda conn: _txn(g, conn, req), grouped=grouped)
    except DuplicateRow:
        # Two submits raced on one Idempotency-Key (PostgreSQL): the other one won.
        if sub.idempotency_key is None:
            raise
        written = await g.store.write_async(lambda conn: _txn(g, conn, req), grouped=grouped)
    return _submitted(req, written)


def _submitted(req: _Request, written: tuple[Action | None, bool, int, bool, int | None]) -> Submitted:
    row, created, seq, reattached, granted = written
    return Submitted(row, created, seq, req.decision, req.shadow, reattached, granted)


def prepare(g: Governor, identity: Identity, sub: Submission, *, key: SigningKey | None = None) -> _Request:
    """Validate, evaluate, and sign what may need signing: everything before the write.
    `key`: the permit signing key, when the caller has it (else it is fetched: see
    `SigningKeys.signing_key`, which may read the database)."""
    check_idempotency_key(sub.idempotency_key)
    decision, agent_id, rhash = g.evaluate(identity, sub)
    policy = g.policy
    now = g.clock()
    shadow_policy = g.shadow_policy
    shadow = None
    if shadow_policy is not None:
        shadow = shadow_decide(
            shadow_policy,
            tool=sub.tool,
            operation=sub.operation,
            params=sub.params,
            context=sub.context,
            agent=_agent(identity, agent_id),
            now=datetime.fromtimestamp(now, UTC),
        )
    action_id = str(uuid.uuid4())
    permit = None
    if decision.effect is Effect.ALLOW:
        # Signed here, not in the transaction, so the SQLite writer never waits on a signature.
        permit = permits.issue(
            g,
            action_id=action_id,
            tool=sub.tool,
            operation=sub.operation,
            params=sub.params,
            request_hash=rhash,
            policy_hash=policy.hash,
            agent_id=agent_id,
            status=Status.ALLOWED,
            approvers=(),
            now=now,
            key=key,
        )
    signing = (key or g.signing_keys.signing_key()) if decision.effect is Effect.REQUIRE_APPROVAL else None
    return _Request(identity, sub, decision, agent_id, rhash, policy.hash, shadow, action_id, now, permit, signing)


def _txn(g: Governor, conn: Connection, req: _Request) -> tuple[Action | None, bool, int, bool, int | None]:
    repos = Repositories.sql(conn)
    sub, decision = req.sub, req.decision
    if sub.idempotency_key is not None:
        existing = repos.actions.find_idempotent(req.identity.key_id, sub.idempotency_key)
        if existing is not None:
            if existing.request_hash != req.rhash:
                raise Conflict(
                    "Idempotency-Key was already used for a different request",
                    field="Idempotency-Key",
                    code="idempotency_mismatch",
                )
            return existing, False, 0, False, None
    if decision.effect is Effect.REQUIRE_APPROVAL and sub.reattach:
        # Refused before a held twin is picked up: see the insert below.
        execution.refuse_unknown_retry(conn, req.identity, req.agent_id, req.rhash, sub.idempotency_key)
        attached = reattach.find_and_attach(conn, g.store, req.identity, req.agent_id, req.rhash, req.now)
        if attached is not None:
            return attached[0], False, attached[1], True, None
    effect, reason = decision.effect, decision.reason
    if effect is not Effect.DENY and decision.limits:
        tripped = limits.reserve(
            conn,
            decision,
            params=sub.params,
            context=sub.context,
            agent=_agent(req.identity, req.agent_id),
            action_id=req.action_id,
            now=req.now,
        )
        if tripped is not None:
            effect, reason = Effect.DENY, tripped
    status = _STATUS_OF[effect]
    issued = req.permit if status is Status.ALLOWED else None
    values = _row_values(g, req, status, effect, reason)
    if issued is not None:
        values |= issued.row_values()
    # An identical call whose earlier run may or may not have happened must be reconciled
    # first. The insert itself says whether there is one (one statement fewer per submit);
    # the refusal then rolls the insert back with the rest of this write.
    if repos.actions.insert_finding_unknown_twin(values) is not None:
        execution.refuse_unknown_retry(conn, req.identity, req.agent_id, req.rhash, sub.idempotency_key)
    seq = audit.append(
        conn,
        event="action.submitted",
        ts=req.now,
        action_id=req.action_id,
        actor=req.identity.label,
        data={
            "status": status.value,
            "decision": effect.value,
            "rule_id": decision.rule_id,
            "reason": reason,
            "risk": decision.risk,
            "policy_hash": req.policy_hash,
            "request_hash": req.rhash,
            "tool": sub.tool,
            "operation": sub.operation,
            "agent_id": req.agent_id,
        }
        | _shadow_audit(req)
        | (issued.audit_data() if issued is not None else {}),
    )
    g.store.notify(conn, type="action.created", action_id=req.action_id, seq=seq)
    granted = None
    if status is Status.PENDING_APPROVAL:  # a standing grant may approve it at once
        granted = grants.try_grant(
            g,
            conn,
            decision,
            action_id=req.action_id,
            tool=sub.tool,
            operation=sub.operation,
            agent_id=req.agent_id,
            params=sub.params,
            context=sub.context,
            agent=_agent(req.identity, req.agent_id),
            submitted_by=req.identity.key_id,
            now=req.now,
            key=req.signing,
        )
    if granted is None:  # the row is what was inserted: no need to read it back
        return Action(**values), True, seq, False, None
    return repos.actions.get(req.action_id), True, seq, False, granted


def _row_values(g: Governor, req: _Request, status: Status, effect: Effect, reason: str) -> dict[str, Any]:
    sub, decision, shadow = req.sub, req.decision, req.shadow
    values: dict[str, Any] = {
        "id": req.action_id,
        "status": status.value,
        "decision": effect.value,
        "reason": reason,
        "risk_level": decision.risk,
        "rule_id": decision.rule_id,
        "policy_hash": req.policy_hash,
        "request_hash": req.rhash,
        "submitted_hash": req.rhash,
        "tool": sub.tool,
        "operation": sub.operation,
        "params": orjson.dumps(sub.params).decode(),
        "context": orjson.dumps(sub.context).decode(),
        "agent_id": req.agent_id,
        "shadow_decision": shadow.decision if shadow else None,
        "shadow_rule_id": shadow.rule_id if shadow else None,
        "shadow_policy_hash": shadow.policy_hash if shadow else None,
        "submitted_by": req.identity.key_id,
        "idempotency_key": sub.idempotency_key,
        "approval_quorum": 1,
        "version": 1,
        "created_at": req.now,
        "updated_at": req.now,
    }
    if status is Status.PENDING_APPROVAL:
        spec = decision.approval
        timeout = spec.timeout_seconds if spec and spec.timeout_seconds else g.approval_timeout
        values["approval_token"] = secrets.token_urlsafe(24)
        values["approval_quorum"] = spec.quorum if spec else 1
        values["approval_groups"] = orjson.dumps(list(spec.approvers)).decode() if spec and spec.approvers else None
        values["expires_at"] = req.now + timeout if timeout else None
    return values


def _shadow_audit(req: _Request) -> dict[str, Any]:
    # Only with a shadow policy, so records without one keep their shape.
    shadow = req.shadow
    if shadow is None:
        return {}
    return {
        "shadow": {
            "decision": shadow.decision,
            "rule_id": shadow.rule_id,
            "policy_hash": shadow.policy_hash,
            "diverged": shadow.diverges_from(req.decision.effect.value),
        }
    }

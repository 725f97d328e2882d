"""The action lifecycle. This is the only code that changes an action's state.

Every transition is a compare-and-set on the stored row (UPDATE ... WHERE id = ? AND
status = ?) and appends its audit record in the same transaction. A transition that
finds the row in another status raises Conflict carrying the current status, so of
two racing requests exactly one wins.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from faramesh import audit, keys
from faramesh.approvals_count import counted_approvals, vote_counts
from faramesh.canonical import canonical_json, request_hash, sha256_hex
from faramesh.errors import Conflict, Forbidden, InvalidInput, NotFound
from faramesh.events import ChangeEvent, EventHub
from faramesh.model import EXECUTABLE, Identity, Role, Status
from faramesh.observability import Telemetry
from faramesh.policy import Decision, Effect, Policy
from faramesh.shadow import ShadowStats, shadow_decide
from faramesh.storage import Store
from faramesh.storage.schema import actions, api_keys, approvals, limit_usage
from faramesh.validation import (
    MAX_AGENT_ID,
    NUL,
    SHOWN,
    check_agent_id,
    check_json_object,
    normalize_name,
    refuse_nul,
    shown,
)

log = logging.getLogger("faramesh.service")

# What the published faramesh-sdk sends when its user gave no agent id.
PLACEHOLDER_AGENT_ID = "default-agent"
MAX_REASON = 2000
MAX_IDEMPOTENCY_KEY = 200  # the column's width
# Seconds of slack when a time filter is turned into a starting sequence number.
_TIME_SLACK = 60.0

# Hot-path statements built once: SQLAlchemy then reuses their compiled form, where
# building a statement per call (`.values(...)`, `.where(... == value)`) costs ~6x more.
_SELECT_ACTION = select(actions).where(actions.c.id == bindparam("action_id"))
_INSERT_ACTION = actions.insert()
# How the published faramesh-sdk names a decision (as /v1/gate/decide answers).
GATE_OUTCOMES = {"allow": "EXECUTE", "require_approval": "ABSTAIN", "deny": "HALT"}


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _status_of(row: Any) -> Status:
    return Status(row.status)


def _check_reason(reason: Any, field: str = "reason") -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"{field} must be at most {MAX_REASON} characters", field=field)
    refuse_nul(reason, field)
    return reason.strip() or None


# limit_usage.bucket is VARCHAR(250); a key value longer than that was never stored raw.
_LEGACY_BUCKET_MAX = 250


def bucket_id(value: str) -> str:
    """The stored bucket of a limit key's value: a fixed-length digest of its canonical
    JSON, so any value (however long, whatever it holds) fits the column."""
    return "sha256:" + sha256_hex(canonical_json(value))


def _shown_key(value: str) -> str:
    # The key as quoted in a reason: short values as before, long ones cut.
    return value if len(value) <= SHOWN else shown(value)


def _humanize(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass
class Submission:
    tool: str
    operation: str
    params: dict[str, Any]
    context: dict[str, Any]
    agent_id: str | None = None  # top-level claim (published faramesh-sdk)
    idempotency_key: str | None = None


class Governor:
    """Submit, decide, report. Thread-safe; every method runs its own transaction."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        *,
        hub: EventHub | None = None,
        approval_timeout: float | None = None,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry | None = None,
        shadow_policy: Policy | None = None,
    ) -> None:
        self.store = store
        self._policy = policy
        self._policy_loaded_at = clock()
        self._policy_lock = threading.Lock()
        self.hub = hub or EventHub()
        self.approval_timeout = approval_timeout
        self.clock = clock
        self.telemetry = telemetry or Telemetry()
        # A candidate policy evaluated beside the active one; it never decides anything.
        self._shadow = shadow_policy
        self._shadow_loaded_at = clock() if shadow_policy is not None else None
        self.shadow_stats = ShadowStats()

    # -- policy ---------------------------------------------------------------
    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def policy_loaded_at(self) -> float:
        return self._policy_loaded_at

    def set_policy(self, policy: Policy, *, actor: str | None = None, source: str | None = None) -> None:
        """Swap the active policy and record the reload in the audit log."""
        now = self.clock()
        with self._policy_lock:
            old = self._policy
            self.store.write(
                lambda conn: audit.append(
                    conn,
                    event="policy.reloaded",
                    ts=now,
                    actor=actor,
                    data={"old_hash": old.hash, "new_hash": policy.hash, "source": source or policy.source},
                )
            )
            self._policy = policy
            self._policy_loaded_at = now
        self.telemetry.metrics.policy_reload(applied=True)

    @property
    def shadow_policy(self) -> Policy | None:
        return self._shadow

    @property
    def shadow_loaded_at(self) -> float | None:
        return self._shadow_loaded_at

    def set_shadow_policy(self, policy: Policy | None) -> None:
        """Swap (or, with None, stop) the shadow policy; its divergence counts start again."""
        with self._policy_lock:
            if policy is not None and self._shadow is not None and policy.hash == self._shadow.hash:
                return
            self._shadow = policy
            self._shadow_loaded_at = self.clock() if policy is not None else None
            self.shadow_stats.reset()

    # -- keys -------------------------------------------------------------------
    def revoke_key(self, key_id: str, *, actor: str | None = None) -> keys.KeyInfo:
        """Revoke a key and end its open event streams and waits in this process now;
        other processes on a shared database hear of it through the change notice."""
        info = self.store.write(
            lambda conn: keys.revoke_key(conn, key_id, actor=actor, now=self.clock(), origin=self.store.instance_id)
        )
        # Also when it was already revoked: whatever it still holds here is closed.
        self.hub.revoke(info.id)
        return info

    def check_revoked_keys(self) -> int:
        """End the streams and waits of keys revoked without notice (e.g. by the CLI on
        SQLite): one read for every key that holds one. Returns how many were ended."""
        return self.hub.check_keys(lambda held: self.store.read(lambda conn: keys.revoked_among(conn, held)))

    # -- identity ---------------------------------------------------------------
    @staticmethod
    def _resolve_agent(identity: Identity, sub: Submission) -> str:
        claims: list[tuple[str, str]] = []
        ctx_claim = sub.context.get("agent_id")
        if ctx_claim is not None:
            claims.append(("context.agent_id", check_agent_id(ctx_claim, "context.agent_id")))
        if sub.agent_id is not None:
            top = check_agent_id(sub.agent_id)
            if top != PLACEHOLDER_AGENT_ID or identity.agent_id == PLACEHOLDER_AGENT_ID:
                claims.append(("agent_id", top))
        if identity.agent_id is not None:
            for field, claim in claims:
                if claim != identity.agent_id:
                    raise Forbidden(
                        f"this key is bound to agent {identity.agent_id!r} and cannot act as {claim!r}",
                        field=field,
                    )
            return identity.agent_id
        distinct = {claim for _, claim in claims}
        if len(distinct) > 1:
            raise InvalidInput("agent_id and context.agent_id disagree", field="agent_id")
        if distinct:
            return distinct.pop()
        if sub.agent_id is not None:
            return sub.agent_id  # the placeholder, when nothing better was given
        name = identity.name
        if name and len(name) <= MAX_AGENT_ID and NUL not in name:
            return name
        # A name that cannot be stored as an agent id (keys made before names were checked).
        return f"key:{identity.key_id}"

    # -- submit -----------------------------------------------------------------
    def evaluate(self, identity: Identity, sub: Submission) -> tuple[Decision, str, str]:
        """Validate and evaluate without recording: (decision, agent_id, request_hash)."""
        sub.tool = normalize_name(sub.tool, "tool")
        sub.operation = normalize_name(sub.operation, "operation")
        sub.params = check_json_object(sub.params, "params")
        sub.context = check_json_object(sub.context, "context")
        agent_id = self._resolve_agent(identity, sub)
        agent = {"id": agent_id, "groups": list(identity.groups), "role": identity.role.value}
        try:
            decision = self._policy.evaluate(
                tool=sub.tool,
                operation=sub.operation,
                params=sub.params,
                context=sub.context,
                agent=agent,
                now=datetime.fromtimestamp(self.clock(), UTC),
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

    def submit(self, identity: Identity, sub: Submission) -> dict[str, Any]:
        started_ns = time.time_ns()
        key = sub.idempotency_key
        if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY):
            raise InvalidInput(f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} characters", field="Idempotency-Key")
        refuse_nul(key, "Idempotency-Key")
        decision, agent_id, rhash = self.evaluate(identity, sub)
        policy = self._policy
        now = self.clock()
        action_id = str(uuid.uuid4())
        agent = {"id": agent_id, "groups": list(identity.groups), "role": identity.role.value}
        shadow_policy = self._shadow
        shadow = None
        if shadow_policy is not None:
            shadow = shadow_decide(
                shadow_policy,
                tool=sub.tool,
                operation=sub.operation,
                params=sub.params,
                context=sub.context,
                agent=agent,
                now=datetime.fromtimestamp(now, UTC),
            )

        def txn(conn: Connection) -> tuple[Any, bool, int]:
            if sub.idempotency_key is not None:
                existing = conn.execute(
                    select(actions).where(
                        actions.c.submitted_by == identity.key_id,
                        actions.c.idempotency_key == sub.idempotency_key,
                    )
                ).first()
                if existing is not None:
                    if existing.request_hash != rhash:
                        raise Conflict(
                            "Idempotency-Key was already used for a different request",
                            field="Idempotency-Key",
                            code="idempotency_mismatch",
                        )
                    return existing, False, 0
            effect, reason, risk = decision.effect, decision.reason, decision.risk
            if effect is not Effect.DENY and decision.limits:
                tripped = self._reserve_limits(conn, decision, sub, agent, action_id, now)
                if tripped is not None:
                    effect, reason = Effect.DENY, tripped
            status = {
                Effect.ALLOW: Status.ALLOWED,
                Effect.DENY: Status.DENIED,
                Effect.REQUIRE_APPROVAL: Status.PENDING_APPROVAL,
            }[effect]
            values: dict[str, Any] = {
                "id": action_id,
                "status": status.value,
                "decision": effect.value,
                "reason": reason,
                "risk_level": risk,
                "rule_id": decision.rule_id,
                "policy_hash": policy.hash,
                "request_hash": rhash,
                "tool": sub.tool,
                "operation": sub.operation,
                "params": orjson.dumps(sub.params).decode(),
                "context": orjson.dumps(sub.context).decode(),
                "agent_id": agent_id,
                "shadow_decision": shadow.decision if shadow else None,
                "shadow_rule_id": shadow.rule_id if shadow else None,
                "shadow_policy_hash": shadow.policy_hash if shadow else None,
                "submitted_by": identity.key_id,
                "idempotency_key": sub.idempotency_key,
                "approval_quorum": 1,
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
            if status is Status.PENDING_APPROVAL:
                spec = decision.approval
                timeout = spec.timeout_seconds if spec and spec.timeout_seconds else self.approval_timeout
                values["approval_token"] = secrets.token_urlsafe(24)
                values["approval_quorum"] = spec.quorum if spec else 1
                values["approval_groups"] = (
                    orjson.dumps(list(spec.approvers)).decode() if spec and spec.approvers else None
                )
                values["expires_at"] = now + timeout if timeout else None
            conn.execute(_INSERT_ACTION, values)
            shadow_audit: dict[str, Any] = {}
            if shadow is not None:  # only with a shadow policy, so records without one keep their shape
                shadow_audit["shadow"] = {
                    "decision": shadow.decision,
                    "rule_id": shadow.rule_id,
                    "policy_hash": shadow.policy_hash,
                    "diverged": shadow.diverges_from(decision.effect.value),
                }
            seq = audit.append(
                conn,
                event="action.submitted",
                ts=now,
                action_id=action_id,
                actor=identity.label,
                data={
                    "status": status.value,
                    "decision": effect.value,
                    "rule_id": decision.rule_id,
                    "reason": reason,
                    "risk": risk,
                    "policy_hash": policy.hash,
                    "request_hash": rhash,
                    "tool": sub.tool,
                    "operation": sub.operation,
                    "agent_id": agent_id,
                }
                | shadow_audit,
            )
            self.store.notify(conn, type="action.created", action_id=action_id, seq=seq)
            row = conn.execute(_SELECT_ACTION, {"action_id": action_id}).one()
            return row, True, seq

        try:
            row, created, seq = self.store.write(txn)
        except IntegrityError:
            # Two submits raced on one Idempotency-Key (PostgreSQL): the other one won.
            if sub.idempotency_key is None:
                raise
            row, created, seq = self.store.write(txn)
        counted = 0 if created else self._counted(row)
        if created:
            if shadow is not None:
                self.shadow_stats.record(decision.effect.value, shadow.decision)
                self._observe(self.telemetry.metrics.shadow, decision.effect.value, shadow.decision)
            self._publish("action.created", row, seq, counted=0)
            self._observe(self.telemetry.submitted, row, started_ns)
        return self.to_api(row, identity, counted=counted)

    def _reserve_limits(
        self,
        conn: Connection,
        decision: Decision,
        sub: Submission,
        agent: Mapping[str, Any],
        action_id: str,
        now: float,
    ) -> str | None:
        """Check and record stateful limits in the submit transaction; a reason if one trips."""
        from faramesh.policy import BudgetSpec

        if conn.dialect.name == "postgresql":
            # Replicas count and record usage one at a time per bucket, so together they
            # cannot overshoot; locks are taken in one order, so they cannot deadlock.
            buckets = {
                f"{spec.limit_id}:{bucket_id(value)}"
                for spec in decision.limits
                if (value := spec.key_value(params=sub.params, context=sub.context, agent=agent)) is not None
            }
            for lock_key in sorted(buckets):
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": lock_key})
        for spec in decision.limits:
            value = spec.key_value(params=sub.params, context=sub.context, agent=agent)
            if value is None:
                return f"Limit {spec.limit_id}: the key {spec.key} is missing, so the limit cannot be checked"
            bucket = bucket_id(value)
            since = now - spec.per_seconds
            # Usage recorded before buckets were digests was keyed by the value itself;
            # it is counted too until it ages out of the window (no migration needed).
            keyed = [bucket, value] if len(value) <= _LEGACY_BUCKET_MAX and NUL not in value else [bucket]
            used_q = select(func.count(), func.coalesce(func.sum(limit_usage.c.amount), 0.0)).where(
                limit_usage.c.limit_id == spec.limit_id,
                limit_usage.c.bucket.in_(keyed),
                limit_usage.c.at > since,
            )
            count, total = conn.execute(used_q).one()
            if isinstance(spec, BudgetSpec):
                amount = spec.amount(sub.params)
                if amount is None:
                    return f"Budget {spec.limit_id}: {spec.sum_field} is missing or not a number"
                if float(total) + amount > spec.max:
                    return (
                        f"Budget exceeded: {float(total) + amount:g} of {spec.max:g} "
                        f"per {_humanize(spec.per_seconds)} for {_shown_key(value)}"
                    )
            else:
                amount = 1.0
                if int(count) + 1 > spec.max:
                    return f"Rate limit exceeded: {spec.max} per {_humanize(spec.per_seconds)} for {_shown_key(value)}"
            conn.execute(
                limit_usage.insert().values(
                    limit_id=spec.limit_id, bucket=bucket, amount=amount, action_id=action_id, at=now
                )
            )
        return None

    # -- reads ------------------------------------------------------------------
    def _load(self, conn: Connection, action_id: str) -> Any:
        if not isinstance(action_id, str) or not action_id or len(action_id) > 64:
            raise NotFound("no such action", field="id")
        refuse_nul(action_id, "id")
        return conn.execute(_SELECT_ACTION, {"action_id": action_id}).first()

    @staticmethod
    def _visible(row: Any, identity: Identity) -> bool:
        return identity.role is not Role.AGENT or row.submitted_by == identity.key_id

    def get(self, identity: Identity, action_id: str) -> dict[str, Any]:
        row = self.store.read(lambda conn: self._load(conn, action_id))
        if row is None or not self._visible(row, identity):
            raise NotFound(f"no action with id {action_id!r}", field="id")
        approvals_rows = self.store.read(lambda conn: self._approvals(conn, action_id))
        return self.to_api(row, identity, approvals_rows)

    def get_status(self, identity: Identity, action_id: str) -> Status:
        row = self.store.read(lambda conn: self._load(conn, action_id))
        if row is None or not self._visible(row, identity):
            raise NotFound(f"no action with id {action_id!r}", field="id")
        return _status_of(row)

    @staticmethod
    def _approvals(conn: Connection, action_id: str) -> list[Any]:
        return list(
            conn.execute(select(approvals).where(approvals.c.action_id == action_id).order_by(approvals.c.id)).all()
        )

    @staticmethod
    def _votes(conn: Connection, ids: list[str]) -> dict[str, list[Any]]:
        """The votes on each of `ids` (approve and request_hash only), for counting."""
        found: dict[str, list[Any]] = {i: [] for i in ids}
        if ids:
            query = select(approvals.c.action_id, approvals.c.approve, approvals.c.request_hash).where(
                approvals.c.action_id.in_(ids)
            )
            for vote in conn.execute(query).all():
                found[vote.action_id].append(vote)
        return found

    def _counted(self, row: Any) -> int | None:
        """The votes that count for a held action now; None for actions that never needed one."""
        if row.decision != Effect.REQUIRE_APPROVAL.value:
            return None
        votes = self.store.read(lambda conn: self._votes(conn, [row.id]))[row.id]
        return counted_approvals(votes, row.request_hash)

    def list_actions(
        self,
        identity: Identity,
        *,
        status: str | None = None,
        tool: str | None = None,
        agent_id: str | None = None,
        risk: str | None = None,
        id_prefix: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        cursor: int | None = None,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int | None]:
        if not 1 <= limit <= 500:
            raise InvalidInput("limit must be between 1 and 500", field="limit")
        if offset < 0:
            raise InvalidInput("offset must not be negative", field="offset")
        if status is not None and status not in {s.value for s in Status}:
            raise InvalidInput(f"status must be one of {', '.join(s.value for s in Status)}", field="status")
        for field, value in (("tool", tool), ("agent_id", agent_id), ("risk", risk), ("id_prefix", id_prefix)):
            refuse_nul(value, field)
        query = select(actions).order_by(actions.c.seq.desc()).limit(limit + 1)
        if identity.role is Role.AGENT:
            query = query.where(actions.c.submitted_by == identity.key_id)
        if status:
            query = query.where(actions.c.status == status)
        if tool:
            query = query.where(actions.c.tool == tool)
        if agent_id:
            query = query.where(actions.c.agent_id == agent_id)
        if risk:
            query = query.where(actions.c.risk_level == risk)
        if id_prefix:
            query = query.where(actions.c.id.startswith(id_prefix, autoescape=True))
            if self.store.dialect == "sqlite":
                # SQLite cannot use an index for LIKE; a byte-ordered range on the id index can.
                query = query.where(actions.c.id >= id_prefix, actions.c.id < id_prefix + "\U0010ffff")
        if since is not None:
            query = query.where(actions.c.created_at >= since)
        if until is not None:
            query = query.where(actions.c.created_at < until)
            # Start the newest-first walk near `until` rather than at the newest row. Times are
            # nearly in seq order; the slack keeps rows committed slightly out of order.
            bound = (
                select(actions.c.seq)
                .where(actions.c.created_at < until + _TIME_SLACK)
                .order_by(actions.c.created_at.desc())
                .limit(1)
                .scalar_subquery()
            )
            query = query.where(actions.c.seq <= func.coalesce(bound, 0))
        if cursor is not None:
            query = query.where(actions.c.seq < cursor)
        if offset:
            query = query.offset(offset)
        rows = self.store.read(lambda conn: conn.execute(query).all())
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = int(rows[-1].seq) if more and rows else None
        held = [r.id for r in rows if r.decision == Effect.REQUIRE_APPROVAL.value]
        votes = self.store.read(lambda conn: self._votes(conn, held)) if held else {}
        return [
            self.to_api(r, identity, counted=counted_approvals(votes[r.id], r.request_hash) if r.id in votes else None)
            for r in rows
        ], next_cursor

    def events(self, identity: Identity, action_id: str) -> list[dict[str, Any]]:
        row = self.store.read(lambda conn: self._load(conn, action_id))
        if row is None or not self._visible(row, identity):
            raise NotFound(f"no action with id {action_id!r}", field="id")
        records = self.store.read(lambda conn: audit.action_events(conn, action_id))
        return [r.to_dict() | {"at": iso(r.ts)} for r in records]

    def params_for_hash(self, identity: Identity, action_id: str, rhash: str) -> dict[str, Any] | None:
        """The params the action had when its request_hash was `rhash`, if it ever was.

        Read from the action's row and its audit trail (an edit records both versions),
        so a refused vote can show the arguments the approver saw beside the new ones.
        """
        action = self.get(identity, action_id)
        if rhash == action["request_hash"]:
            return dict(action["params"])
        for record in self.store.read(lambda conn: audit.action_events(conn, action_id)):
            data = record.data if isinstance(record.data, dict) else {}
            if "original_request_hash" not in data:
                continue  # not an edit
            if data.get("original_request_hash") == rhash and isinstance(data.get("original_params"), dict):
                return dict(data["original_params"])
            if data.get("request_hash") == rhash and isinstance(data.get("params"), dict):
                return dict(data["params"])
        return None

    # -- decisions --------------------------------------------------------------
    def approve(
        self,
        identity: Identity,
        action_id: str,
        *,
        reason: str | None = None,
        token: str | None = None,
        params: Any = None,
        expected_hash: str | None = None,
    ) -> dict[str, Any]:
        """Approve; with `params`, approve edited arguments (re-evaluated by the policy).

        `expected_hash` binds the vote to the arguments the approver saw: when the
        action's request_hash differs (someone edited it), the vote is refused.
        """
        return self._decide(
            identity,
            action_id,
            approve=True,
            reason=reason,
            token=token,
            params=params,
            expected_hash=expected_hash,
        )

    def deny(
        self,
        identity: Identity,
        action_id: str,
        *,
        reason: str | None = None,
        token: str | None = None,
        expected_hash: str | None = None,
    ) -> dict[str, Any]:
        return self._decide(identity, action_id, approve=False, reason=reason, token=token, expected_hash=expected_hash)

    def _decide(
        self,
        identity: Identity,
        action_id: str,
        *,
        approve: bool,
        reason: str | None,
        token: str | None,
        params: Any = None,
        expected_hash: str | None = None,
    ) -> dict[str, Any]:
        verb = "approve" if approve else "deny"
        if not identity.can_decide:
            raise Forbidden(f"only approver and admin keys can {verb} actions")
        reason = _check_reason(reason)
        if params is not None:
            params = check_json_object(params, "params")
        now = self.clock()

        def txn(conn: Connection) -> tuple[Any, list[Any], str, int, int]:
            if not isinstance(action_id, str) or not action_id or len(action_id) > 64:
                raise NotFound("no such action", field="id")
            refuse_nul(action_id, "id")
            # Lock the row (PostgreSQL) so concurrent votes on one action count each other.
            row = conn.execute(select(actions).where(actions.c.id == action_id).with_for_update()).first()
            if row is None:
                raise NotFound(f"no action with id {action_id!r}", field="id")
            current = _status_of(row)
            if current is not Status.PENDING_APPROVAL:
                raise Conflict(
                    f"cannot {verb}: action is {current.value}, not pending_approval",
                    status=current.value,
                )
            if row.submitted_by == identity.key_id or (
                identity.agent_id is not None and identity.agent_id == row.agent_id
            ):
                raise Forbidden(f"you submitted this action, so you cannot {verb} it")
            if token is not None and not (row.approval_token and hmac.compare_digest(str(token), row.approval_token)):
                raise Forbidden("approval token does not match this action", field="token")
            groups = orjson.loads(row.approval_groups) if row.approval_groups else []
            if groups and not set(groups) & set(identity.groups):
                raise Forbidden(f"only members of {', '.join(groups)} may decide this action", field="approvers")
            if expected_hash is not None and not hmac.compare_digest(str(expected_hash), row.request_hash):
                raise Conflict(
                    f"cannot {verb}: the action's arguments changed since you looked (request_hash is now "
                    f"{row.request_hash})",
                    field="request_hash",
                    code="request_hash_mismatch",
                    status=current.value,
                )
            edit = self._edit_params(conn, row, params, now) if params is not None else None
            vote_hash = edit["request_hash"] if edit else row.request_hash
            try:
                with conn.begin_nested():
                    conn.execute(
                        approvals.insert().values(
                            action_id=action_id,
                            approver=identity.key_id,
                            approver_label=identity.label,
                            approve=approve,
                            reason=reason,
                            request_hash=vote_hash,
                            created_at=now,
                        )
                    )
            except IntegrityError:
                raise Conflict("you have already decided on this action", status=current.value) from None
            # The one rule of what counts (an edit resets the votes for other arguments).
            votes = counted_approvals(self._votes(conn, [action_id])[action_id], vote_hash)
            if approve:
                done = votes >= int(row.approval_quorum)
                new_status = Status.APPROVED if done else Status.PENDING_APPROVAL
                event = "action.approved" if done else "action.approval_recorded"
            else:
                done = True
                new_status = Status.DENIED
                event = "action.denied"
            values: dict[str, Any] = {
                "status": new_status.value,
                "version": row.version + 1,
                "updated_at": now,
            }
            if done:
                values["decided_by"] = identity.label
                values["decision_reason"] = reason or (
                    f"Approved by {identity.label}" if approve else f"Denied by {identity.label}"
                )
                values["approval_token"] = None  # single use
            if edit:
                values["params"] = edit["params_json"]
                values["request_hash"] = vote_hash
                values["original_params"] = row.original_params or row.params
                if not done:  # a token fetched for the old arguments must not approve the new ones
                    values["approval_token"] = secrets.token_urlsafe(24)
            result = conn.execute(
                update(actions)
                .where(
                    actions.c.id == action_id,
                    actions.c.status == Status.PENDING_APPROVAL.value,
                    actions.c.version == row.version,
                )
                .values(**values)
            )
            if result.rowcount != 1:
                fresh = self._load(conn, action_id)
                raise Conflict(
                    f"cannot {verb}: the action changed meanwhile (now {fresh.status})",
                    status=fresh.status,
                )
            seq = audit.append(
                conn,
                event=event,
                ts=now,
                action_id=action_id,
                actor=identity.label,
                data={
                    "status": new_status.value,
                    "approve": approve,
                    "reason": reason,
                    "request_hash": vote_hash,
                    "approvals": int(votes) if approve else None,
                    "quorum": int(row.approval_quorum),
                }
                | (edit["audit"] if edit else {}),
            )
            self.store.notify(conn, type=event, action_id=action_id, seq=seq)
            fresh = conn.execute(_SELECT_ACTION, {"action_id": action_id}).one()
            return fresh, self._approvals(conn, action_id), event, seq, votes

        # The answer is what the transaction wrote: reading it back after the commit
        # could fail (a dropped connection) and turn a committed vote into an error.
        row, vote_rows, event, seq, counted = self.store.write(txn)
        self._publish(event, row, seq, counted=counted)
        return self.to_api(row, identity, vote_rows)

    def _edit_params(self, conn: Connection, row: Any, params: dict[str, Any], now: float) -> dict[str, Any] | None:
        """Re-evaluate an approver's edited params inside the approve transaction.

        Refuses (422, field `params`) when the active policy would deny them, when a
        different approval rule would hold them, or when a limit would trip; else returns
        the new params and request_hash plus what the audit record keeps of both versions.
        """
        context = orjson.loads(row.context)
        new_hash = request_hash(
            agent_id=row.agent_id, tool=row.tool, operation=row.operation, params=params, context=context
        )
        if new_hash == row.request_hash:
            return None  # the same arguments: a plain approval
        current = orjson.loads(row.params)
        key = conn.execute(select(api_keys.c.role, api_keys.c.groups).where(api_keys.c.id == row.submitted_by)).first()
        agent = {
            "id": row.agent_id,
            "groups": orjson.loads(key.groups) if key is not None and key.groups else [],
            "role": key.role if key is not None else Role.AGENT.value,
        }
        try:
            decision = self._policy.evaluate(
                tool=row.tool,
                operation=row.operation,
                params=params,
                context=context,
                agent=agent,
                now=datetime.fromtimestamp(now, UTC),
            )
        except Exception:  # fail closed
            log.exception("policy evaluation of edited params failed")
            raise InvalidInput("the policy could not evaluate the edited params", field="params") from None
        if decision.effect is Effect.DENY:
            raise InvalidInput(f"the policy denies the edited params: {decision.reason}", field="params")
        if decision.effect is Effect.REQUIRE_APPROVAL and decision.rule_id != row.rule_id:
            raise InvalidInput(
                f"the edited params fall under rule {decision.rule_id} ({decision.reason}), which sets its own "
                "approval; deny this action and let the agent submit the new request",
                field="params",
            )
        if decision.limits:
            # Re-reserve the action's usage (e.g. its budget amount) for the edited params.
            conn.execute(limit_usage.delete().where(limit_usage.c.action_id == row.id))
            sub = Submission(tool=row.tool, operation=row.operation, params=params, context=context)
            tripped = self._reserve_limits(conn, decision, sub, agent, row.id, now)
            if tripped is not None:
                raise InvalidInput(f"the edited params exceed a limit: {tripped}", field="params")
        return {
            "params_json": orjson.dumps(params).decode(),
            "request_hash": new_hash,
            "audit": {
                "params": params,
                "original_params": current,
                "original_request_hash": row.request_hash,
                "reevaluation": {
                    "decision": decision.effect.value,
                    "rule_id": decision.rule_id,
                    "reason": decision.reason,
                },
            },
        }

    def report_result(
        self,
        identity: Identity,
        action_id: str,
        *,
        success: Any,
        result: Any = None,
        error: Any = None,
    ) -> dict[str, Any]:
        if not isinstance(success, bool):
            raise InvalidInput("success must be true or false", field="success")
        if error is not None and not isinstance(error, str):
            raise InvalidInput("error must be a string", field="error")
        if error is not None and len(error) > 100_000:
            raise InvalidInput("error must be at most 100000 characters", field="error")
        refuse_nul(error, "error")
        if result is not None:
            check_json_object({"result": result}, "body")
        now = self.clock()
        new_status = Status.SUCCEEDED if success else Status.FAILED

        def txn(conn: Connection) -> tuple[Any, int]:
            row = self._load(conn, action_id)
            if row is None or not self._visible(row, identity):
                raise NotFound(f"no action with id {action_id!r}", field="id")
            if row.submitted_by != identity.key_id:
                raise Forbidden("only the agent that submitted an action can report its result")
            current = _status_of(row)
            if current not in EXECUTABLE:
                raise Conflict(
                    f"cannot report a result: action is {current.value}; results are accepted "
                    "once, for allowed or approved actions",
                    status=current.value,
                )
            changed = conn.execute(
                update(actions)
                .where(
                    actions.c.id == action_id,
                    actions.c.status.in_([s.value for s in EXECUTABLE]),
                    actions.c.version == row.version,
                )
                .values(
                    status=new_status.value,
                    result=orjson.dumps(result).decode() if result is not None else None,
                    error=error,
                    version=row.version + 1,
                    updated_at=now,
                )
            )
            if changed.rowcount != 1:
                fresh = self._load(conn, action_id)
                raise Conflict(
                    f"cannot report a result: the action changed meanwhile (now {fresh.status})",
                    status=fresh.status,
                )
            seq = audit.append(
                conn,
                event="action.succeeded" if success else "action.failed",
                ts=now,
                action_id=action_id,
                actor=identity.label,
                data={"status": new_status.value, "success": success, "result": result, "error": error},
            )
            self.store.notify(
                conn, type="action.succeeded" if success else "action.failed", action_id=action_id, seq=seq
            )
            return conn.execute(_SELECT_ACTION, {"action_id": action_id}).one(), seq

        row, seq = self.store.write(txn)
        counted = self._counted(row)
        self._publish("action.succeeded" if success else "action.failed", row, seq, counted=counted)
        return self.to_api(row, identity, counted=counted)

    # -- expiry -----------------------------------------------------------------
    def expire_due(self, now: float | None = None, batch: int = 500) -> int:
        """Deny every pending action whose approval window has passed. Returns how many."""
        now = self.clock() if now is None else now
        if self.store.shared:
            return self._expire_due_shared(now, batch)
        due = self.store.read(
            lambda conn: conn.execute(
                select(actions.c.id)
                .where(
                    actions.c.status == Status.PENDING_APPROVAL.value,
                    actions.c.expires_at.is_not(None),
                    actions.c.expires_at <= now,
                )
                .limit(batch)
            ).all()
        )
        expired = 0
        for (action_id,) in due:
            outcome = self.store.write(partial(self._expire_one, action_id=action_id, now=now))
            if outcome is not None:
                expired += 1
                self._publish("action.expired", *outcome)
        return expired

    def _expire_due_shared(self, now: float, batch: int) -> int:
        """Expiry when several replicas sweep one database: each transaction locks the
        row it takes and skips rows another replica holds, so the replicas split the work."""
        expired = 0
        for _ in range(batch):
            outcome = self.store.write(partial(self._expire_next, now=now))
            if outcome is None:
                break
            expired += 1
            self._publish("action.expired", *outcome)
        return expired

    def _expire_next(self, conn: Connection, *, now: float) -> tuple[Any, int] | None:
        picked = conn.execute(
            select(actions.c.id)
            .where(
                actions.c.status == Status.PENDING_APPROVAL.value,
                actions.c.expires_at.is_not(None),
                actions.c.expires_at <= now,
            )
            .order_by(actions.c.expires_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if picked is None:
            return None
        return self._expire_one(conn, action_id=picked.id, now=now)

    def _expire_one(self, conn: Connection, *, action_id: str, now: float) -> tuple[Any, int] | None:
        row = self._load(conn, action_id)
        if row is None or row.status != Status.PENDING_APPROVAL.value or row.expires_at is None:
            return None
        waited = _humanize(round(row.expires_at - row.created_at, 3))
        reason = f"Approval expired: no decision within {waited}"
        changed = conn.execute(
            update(actions)
            .where(
                actions.c.id == action_id,
                actions.c.status == Status.PENDING_APPROVAL.value,
                actions.c.version == row.version,
            )
            .values(
                status=Status.DENIED.value,
                decided_by="system:expiry",
                decision_reason=reason,
                approval_token=None,
                version=row.version + 1,
                updated_at=now,
            )
        )
        if changed.rowcount != 1:
            return None
        seq = audit.append(
            conn,
            event="action.expired",
            ts=now,
            action_id=action_id,
            actor="system:expiry",
            data={"status": Status.DENIED.value, "reason": reason},
        )
        self.store.notify(conn, type="action.expired", action_id=action_id, seq=seq)
        return conn.execute(_SELECT_ACTION, {"action_id": action_id}).one(), seq

    def next_expiry(self) -> float | None:
        return self.store.read(
            lambda conn: conn.execute(
                select(func.min(actions.c.expires_at)).where(actions.c.status == Status.PENDING_APPROVAL.value)
            ).scalar()
        )

    # -- output -----------------------------------------------------------------
    def _publish(self, event_type: str, row: Any, seq: int, *, counted: int | None = None) -> None:
        if counted is None:
            counted = self._counted(row)
        self.hub.publish(
            ChangeEvent(
                seq=seq,
                type=event_type,
                action_id=row.id,
                action=self.to_api(row, None, counted=counted),
                data={"submitted_by": row.submitted_by},
            )
        )
        self._observe(self.telemetry.changed, event_type, row)

    @staticmethod
    def _observe(record: Callable[..., None], *args: Any) -> None:
        # The change is committed: a failure to record metrics must not fail the request.
        try:
            record(*args)
        except Exception:
            log.exception("recording telemetry failed")

    def snapshot(self, action_id: str) -> tuple[dict[str, Any], str] | None:
        """The action as events carry it (no approval token) and its submitter's key id."""
        row = self.store.read(lambda conn: self._load(conn, action_id))
        if row is None:
            return None
        return self.to_api(row, None, counted=self._counted(row)), row.submitted_by

    @staticmethod
    def to_api(
        row: Any, identity: Identity | None, approval_rows: list[Any] | None = None, *, counted: int | None = None
    ) -> dict[str, Any]:
        """The action as the API shows it. `counted` (or `approval_rows`, to count from) gives
        `approval.counted`, the votes that count toward the quorum now."""
        status = _status_of(row)
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
        shadow_decision = getattr(row, "shadow_decision", None)
        if shadow_decision is not None:
            data["shadow_decision"] = shadow_decision
            data["shadow_rule_id"] = row.shadow_rule_id
            data["shadow_policy_hash"] = row.shadow_policy_hash
        if row.decision == Effect.REQUIRE_APPROVAL.value:
            data["approval"] = {
                "quorum": row.approval_quorum,
                "approvers": orjson.loads(row.approval_groups) if row.approval_groups else [],
                "expires_at": iso(row.expires_at),
            }
            if counted is not None:
                data["approval"]["counted"] = counted
        if approval_rows is not None:
            data["approvals"] = [
                {
                    "approver": a.approver_label,
                    "approve": bool(a.approve),
                    "reason": a.reason,
                    "at": iso(a.created_at),
                    "request_hash": a.request_hash,
                    # Does this vote count now? The same rule as the quorum.
                    "counts": vote_counts(approve=a.approve, vote_hash=a.request_hash, current_hash=row.request_hash),
                }
                for a in approval_rows
            ]
        if identity is not None and identity.can_decide and status is Status.PENDING_APPROVAL:
            data["approval_token"] = row.approval_token
        return data

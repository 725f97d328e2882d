"""Approve and deny: the one place a quorum is decided.

`vote_counts` is the rule of which votes count (an approval counts only for exactly the
arguments it approved, so an edit resets the others); the approve transition decides
"quorum reached" with it, and every view (the API's `approval.counted`, the dashboard's
action page and queue, the live feed, Slack) shows its result instead of counting.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from faramesh import audit
from faramesh.canonical import request_hash
from faramesh.errors import Conflict, Forbidden, InvalidInput, KeyRevoked
from faramesh.model import Identity, Role, Status
from faramesh.policy import Effect
from faramesh.service import access, limits, people, permits
from faramesh.service.permit_keys import SigningKey
from faramesh.storage import Store, approvals_repo
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories
from faramesh.validation import check_json_object, refuse_nul

if TYPE_CHECKING:
    from faramesh.service.governor import Governor

log = logging.getLogger("faramesh.service")

MAX_REASON = 2000


def vote_counts(*, approve: Any, vote_hash: str | None, current_hash: str) -> bool:
    """An approval counts only for exactly the arguments it approved: an edit resets the others."""
    return bool(approve) and vote_hash == current_hash


def counted_approvals(votes: Iterable[Any], current_hash: str) -> int:
    """How many of `votes` (rows with `approve` and `request_hash`) count for `current_hash`."""
    return sum(1 for v in votes if vote_counts(approve=v.approve, vote_hash=v.request_hash, current_hash=current_hash))


def counted_approvers(votes: Iterable[Any], current_hash: str) -> list[str]:
    """The key ids whose approvals count for `current_hash`: the approvers a permit names."""
    return [
        v.approver for v in votes if vote_counts(approve=v.approve, vote_hash=v.request_hash, current_hash=current_hash)
    ]


def approvers_of(store: Store, row: Any) -> list[str]:
    """The approvers whose votes count for the action now (none for actions never held)."""
    if row.decision != Effect.REQUIRE_APPROVAL.value:
        return []
    votes = store.read(lambda conn: approvals_repo.votes_of(conn, [row.id])[row.id])
    return counted_approvers(votes, row.request_hash)


def counted(conn: Connection, rows: Iterable[Any]) -> dict[str, int]:
    """The votes that count now for each held action among `rows` (others are left out)."""
    held = [r for r in rows if r.decision == Effect.REQUIRE_APPROVAL.value]
    if not held:
        return {}
    votes = approvals_repo.votes_of(conn, [r.id for r in held])
    return {r.id: counted_approvals(votes[r.id], r.request_hash) for r in held}


def check_reason(reason: Any, field: str = "reason") -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"{field} must be at most {MAX_REASON} characters", field=field)
    refuse_nul(reason, field)
    return reason.strip() or None


@dataclass(frozen=True)
class Decided:
    """What a decision wrote: the action after it, its votes, the event and how many count."""

    row: Any
    votes: list[Any]
    event: str
    seq: int
    counted: int


@dataclass(frozen=True)
class _Vote:
    identity: Identity
    approve: bool
    reason: str | None
    token: str | None
    params: dict[str, Any] | None
    expected_hash: str | None

    @property
    def verb(self) -> str:
        return "approve" if self.approve else "deny"


def decide(
    g: Governor,
    identity: Identity,
    action_id: str,
    *,
    approve: bool,
    reason: str | None,
    token: str | None,
    params: Any = None,
    expected_hash: str | None = None,
) -> Decided:
    """Record one vote and, when it settles the action, its decision: one transaction."""
    verb = "approve" if approve else "deny"
    if not identity.can_decide:
        raise Forbidden(f"only approver and admin keys can {verb} actions")
    vote = _Vote(
        identity=identity,
        approve=approve,
        reason=check_reason(reason),
        token=token,
        params=check_json_object(params, "params") if params is not None else None,
        expected_hash=expected_hash,
    )
    now = g.clock()
    # Fetched before the transaction, which signs the permit with it when the quorum is reached.
    signing = g.signing_keys.signing_key() if approve else None
    # The answer is what the transaction wrote: reading it back after the commit
    # could fail (a dropped connection) and turn a committed vote into an error.
    return g.store.write(lambda conn: _decide_txn(g, conn, access.checked_id(action_id), vote, now, signing))


def _decide_txn(
    g: Governor, conn: Connection, action_id: str, vote: _Vote, now: float, signing: SigningKey | None
) -> Decided:
    repos = Repositories.sql(conn)
    identity, verb = vote.identity, vote.verb
    # The key (or person) was checked when the request arrived; one revoked since must not vote.
    if not people.still_active(conn, identity):
        if identity.person is not None:
            raise Forbidden(f"your groups no longer allow you to decide; the {verb} was not recorded")
        raise KeyRevoked(f"this API key was revoked; the {verb} was not recorded")
    # Lock the row (PostgreSQL) so concurrent votes on one action count each other.
    row = repos.actions.get_for_update(action_id)
    if row is None:
        raise access.not_found(action_id)
    current = _check_may_vote(conn, row, vote)
    edit = _edit_params(g, conn, row, vote.params, now) if vote.params is not None else None
    vote_hash = edit["request_hash"] if edit else row.request_hash
    recorded = approvals_repo.insert_vote(
        conn,
        action_id=action_id,
        approver=identity.key_id,
        approver_label=identity.label,
        approver_person=orjson.dumps(identity.person.to_dict()).decode() if identity.person else None,
        approve=vote.approve,
        reason=vote.reason,
        request_hash=vote_hash,
        created_at=now,
    )
    if not recorded:
        raise Conflict("you have already decided on this action", status=current.value)
    # The one rule of what counts (an edit resets the votes for other arguments).
    vote_rows = approvals_repo.votes_of(conn, [action_id])[action_id]
    votes = counted_approvals(vote_rows, vote_hash)
    done = not vote.approve or votes >= int(row.approval_quorum)
    if vote.approve:
        new_status = Status.APPROVED if done else Status.PENDING_APPROVAL
        event = "action.approved" if done else "action.approval_recorded"
    else:
        new_status, event = Status.DENIED, "action.denied"
    values = _new_values(row, vote, new_status, done, edit, now)
    if new_status is Status.APPROVED and g.approval_lapse is not None:
        values["lapses_at"] = now + g.approval_lapse  # permission to run now, not next month
    permit = None
    if new_status is Status.APPROVED:
        # The permit binds the approved arguments (the edited ones, after an edit) and whose votes counted.
        permit = permits.issue_for_row(
            g,
            row,
            status=Status.APPROVED,
            approvers=counted_approvers(vote_rows, vote_hash),
            now=now,
            params_json=edit["params_json"] if edit else None,
            request_hash=vote_hash,
            key=signing,
        )
        values |= permit.row_values()
    if not repos.actions.compare_and_set(
        action_id, statuses=[Status.PENDING_APPROVAL.value], version=row.version, values=values
    ):
        now_status = repos.actions.current_status(action_id)
        raise Conflict(f"cannot {verb}: the action changed meanwhile (now {now_status})", status=now_status)
    seq = audit.append(
        conn,
        event=event,
        ts=now,
        action_id=action_id,
        actor=identity,
        data={
            "status": new_status.value,
            "approve": vote.approve,
            "reason": vote.reason,
            "request_hash": vote_hash,
            "approvals": int(votes) if vote.approve else None,
            "quorum": int(row.approval_quorum),
        }
        | (edit["audit"] if edit else {})
        | (permit.audit_data() if permit is not None else {}),
    )
    g.store.notify(conn, type=event, action_id=action_id, seq=seq)
    fresh = repos.actions.get(action_id)
    return Decided(fresh, approvals_repo.votes_on(conn, action_id), event, seq, votes)


def _check_may_vote(conn: Connection, row: Any, vote: _Vote) -> Status:
    """Refuse a vote this key may not cast on this action now; the action's status if it may."""
    identity, verb = vote.identity, vote.verb
    current = Status(row.status)
    if current is not Status.PENDING_APPROVAL:
        raise Conflict(f"cannot {verb}: action is {current.value}, not pending_approval", status=current.value)
    if row.submitted_by == identity.key_id or (identity.agent_id is not None and identity.agent_id == row.agent_id):
        raise Forbidden(f"you submitted this action, so you cannot {verb} it")
    if vote.token is not None and not (row.approval_token and hmac.compare_digest(str(vote.token), row.approval_token)):
        raise Forbidden("approval token does not match this action", field="token")
    groups = orjson.loads(row.approval_groups) if row.approval_groups else []
    if groups and not set(groups) & set(identity.groups):
        raise Forbidden(f"only members of {', '.join(groups)} may decide this action", field="approvers")
    if vote.expected_hash is not None and not hmac.compare_digest(str(vote.expected_hash), row.request_hash):
        raise Conflict(
            f"cannot {verb}: the action's arguments changed since you looked (request_hash is now {row.request_hash})",
            field="request_hash",
            code="request_hash_mismatch",
            status=current.value,
        )
    return current


def _new_values(
    row: Any, vote: _Vote, new_status: Status, done: bool, edit: dict[str, Any] | None, now: float
) -> dict[str, Any]:
    label = vote.identity.label
    values: dict[str, Any] = {"status": new_status.value, "version": row.version + 1, "updated_at": now}
    if done:
        values["decided_by"] = label
        values["decision_reason"] = vote.reason or (f"Approved by {label}" if vote.approve else f"Denied by {label}")
        values["approval_token"] = None  # single use
    if edit:
        values["params"] = edit["params_json"]
        values["request_hash"] = edit["request_hash"]
        values["original_params"] = row.original_params or row.params
        if not done:  # a token fetched for the old arguments must not approve the new ones
            values["approval_token"] = secrets.token_urlsafe(24)
    return values


def _edit_params(g: Governor, conn: Connection, row: Any, params: dict[str, Any], now: float) -> dict[str, Any] | None:
    """Re-evaluate an approver's edited params inside the approve transaction.

    Refuses (422, field `params`) when the active policy would deny them, when a
    different approval rule would hold them, or when a limit would trip; else returns
    the new params and request_hash plus what the audit record keeps of both versions.
    """
    repos = Repositories.sql(conn)
    context = orjson.loads(row.context)
    new_hash = request_hash(
        agent_id=row.agent_id, tool=row.tool, operation=row.operation, params=params, context=context
    )
    if new_hash == row.request_hash:
        return None  # the same arguments: a plain approval
    current = orjson.loads(row.params)
    key = repos.keys.get(row.submitted_by)
    agent = {
        "id": row.agent_id,
        "groups": orjson.loads(key.groups) if key is not None and key.groups else [],
        "role": key.role if key is not None else Role.AGENT.value,
    }
    try:
        decision = g.policy.evaluate(
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
        repos.limits.release(row.id)
        tripped = limits.reserve(conn, decision, params=params, context=context, agent=agent, action_id=row.id, now=now)
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

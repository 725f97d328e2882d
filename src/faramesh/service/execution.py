"""Single use and the outcome ledger: start, heartbeat, the execution lease, reconcile.

- `start`: the submitting agent takes the one execution of an allowed or approved
  action; the action becomes `executing` with an execution lease. A second start is a
  409, so two workers holding the same permit cannot both run it.
- `heartbeat`: the agent extends the lease while it runs.
- The lease: a started action with no result when its lease runs out becomes
  `outcome_unknown` (the server's sweeper, like approval expiry). Nobody knows whether
  the side effect happened, so an identical retry is refused (`refuse_unknown_retry`)
  until someone says what happened:
- `reconcile`: the submitting agent, or a person with an approver or admin key, records
  `succeeded` or `failed`. A late result from the agent that ran it does the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from faramesh import audit
from faramesh.durations import humanize
from faramesh.errors import Conflict, Forbidden, InvalidInput, KeyRevoked
from faramesh.model import EXECUTABLE, Identity, Status
from faramesh.service import access, keys
from faramesh.service.approvals import check_reason
from faramesh.service.expiry import sweep_due
from faramesh.service.permits import permit_sha256
from faramesh.service.results import check_result
from faramesh.storage import Store
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories

if TYPE_CHECKING:
    from faramesh.service.governor import Governor

STARTED = "action.started"
LEASE_EXPIRED = "action.outcome_unknown"
RECONCILED = "action.reconciled"
LEASE_ACTOR = "system:lease"
OUTCOMES = {"succeeded": Status.SUCCEEDED, "failed": Status.FAILED}
_EXECUTABLE = [s.value for s in EXECUTABLE]
_EXECUTING = Status.EXECUTING.value
_UNKNOWN = Status.OUTCOME_UNKNOWN.value


def _own_action(conn: Connection, identity: Identity, action_id: str, verb: str) -> Any:
    """The action, locked (PostgreSQL), when `identity` submitted it; 404/403 otherwise."""
    # The key was checked when the request arrived; one revoked since must not act.
    if not keys.still_active(conn, identity.key_id):
        raise KeyRevoked(f"this API key was revoked; the {verb} was not recorded")
    row = Repositories.sql(conn).actions.get_for_update(access.checked_id(action_id))
    if row is None or not access.visible(row, identity):
        raise access.not_found(action_id)
    if row.submitted_by != identity.key_id:
        raise Forbidden(f"only the agent that submitted an action can {verb} it")
    return row


def start(g: Governor, identity: Identity, action_id: str) -> tuple[Any, int]:
    """Take the single execution: allowed/approved -> executing, once. (row, audit seq)."""
    now = g.clock()
    lease_until = now + g.execution_lease

    def txn(conn: Connection) -> tuple[Any, int]:
        repos = Repositories.sql(conn)
        row = _own_action(conn, identity, action_id, "start")
        current = Status(row.status)
        if current not in EXECUTABLE:
            already = " It was already started: an action runs once." if row.started_at is not None else ""
            raise Conflict(
                f"cannot start: action is {current.value}; only allowed or approved actions can be started.{already}",
                status=current.value,
            )
        values = {
            "status": _EXECUTING,
            "started_at": now,
            "lease_expires_at": lease_until,
            "approval_token": None,
            "version": row.version + 1,
            "updated_at": now,
        }
        if not repos.actions.compare_and_set(row.id, statuses=_EXECUTABLE, version=row.version, values=values):
            fresh = repos.actions.current_status(row.id)
            raise Conflict(f"cannot start: the action changed meanwhile (now {fresh})", status=fresh)
        seq = audit.append(
            conn,
            event=STARTED,
            ts=now,
            action_id=row.id,
            actor=identity.label,
            data={
                "status": _EXECUTING,
                "previous": current.value,
                "lease_expires_at": lease_until,
                "permit_sha256": permit_sha256(row.permit) if row.permit else None,
            },
        )
        g.store.notify(conn, type=STARTED, action_id=row.id, seq=seq)
        return repos.actions.get(row.id), seq

    return g.store.write(txn)


def heartbeat(g: Governor, identity: Identity, action_id: str) -> Any:
    """Extend the execution lease of a running action to now + the lease. Not a state
    change: no version bump and no audit record, so it never makes a result lose a race."""
    now = g.clock()
    lease_until = now + g.execution_lease

    def txn(conn: Connection) -> Any:
        repos = Repositories.sql(conn)
        row = _own_action(conn, identity, action_id, "heartbeat")
        if row.status != _EXECUTING or not repos.actions.compare_and_set(
            row.id, statuses=[_EXECUTING], version=row.version, values={"lease_expires_at": lease_until}
        ):
            fresh = repos.actions.current_status(row.id)
            lapsed = " Its execution lease ran out: reconcile it." if fresh == _UNKNOWN else ""
            raise Conflict(
                f"cannot extend the lease: action is {fresh}, not executing.{lapsed}",
                status=fresh,
            )
        return repos.actions.get(row.id)

    return g.store.write(txn)


def reconcile(
    g: Governor,
    identity: Identity,
    action_id: str,
    *,
    outcome: Any,
    reason: Any = None,
    result: Any = None,
    error: Any = None,
) -> tuple[Any, int, str]:
    """Say what became of an action whose outcome is unknown: (row, audit seq, event)."""
    if not isinstance(outcome, str) or outcome not in OUTCOMES:
        raise InvalidInput('outcome must be "succeeded" or "failed"', field="outcome")
    new_status = OUTCOMES[outcome]
    why = check_reason(reason)
    check_result(result, error)
    now = g.clock()

    def txn(conn: Connection) -> tuple[Any, int, str]:
        repos = Repositories.sql(conn)
        if not keys.still_active(conn, identity.key_id):
            raise KeyRevoked("this API key was revoked; the reconciliation was not recorded")
        row = repos.actions.get_for_update(access.checked_id(action_id))
        if row is None or not access.visible(row, identity):
            raise access.not_found(action_id)
        if row.submitted_by != identity.key_id and not identity.can_decide:
            raise Forbidden("only the agent that submitted an action, or an approver or admin, can reconcile it")
        current = Status(row.status)
        if current is not Status.OUTCOME_UNKNOWN:
            raise Conflict(
                f"cannot reconcile: action is {current.value}; only actions whose outcome is unknown "
                "(started, no result within the execution lease) are reconciled",
                status=current.value,
            )
        values = {
            "status": new_status.value,
            "result": orjson.dumps(result).decode() if result is not None else None,
            "error": error,
            "version": row.version + 1,
            "updated_at": now,
        }
        if not repos.actions.compare_and_set(row.id, statuses=[_UNKNOWN], version=row.version, values=values):
            fresh = repos.actions.current_status(row.id)
            raise Conflict(f"cannot reconcile: the action changed meanwhile (now {fresh})", status=fresh)
        by = "the agent" if row.submitted_by == identity.key_id else "a person"
        seq = audit.append(
            conn,
            event=RECONCILED,
            ts=now,
            action_id=row.id,
            actor=identity.label,
            data={
                "status": new_status.value,
                "previous": _UNKNOWN,
                "outcome": outcome,
                "by": by,
                "reason": why,
                "result": result,
                "error": error,
            },
        )
        g.store.notify(conn, type=RECONCILED, action_id=row.id, seq=seq)
        return repos.actions.get(row.id), seq, RECONCILED

    return g.store.write(txn)


def refuse_unknown_retry(
    conn: Connection, identity: Identity, agent_id: str, rhash: str, idempotency_key: str | None
) -> None:
    """Inside submit: refuse an identical call while an earlier one's outcome is unknown,
    so an ambiguous payment is never silently repeated. A replay under the same
    Idempotency-Key is left to answer with its own action."""
    earlier = Repositories.sql(conn).actions.find_same_call_in(agent_id, rhash, _UNKNOWN)
    if earlier is None:
        return
    if idempotency_key is not None and (earlier.submitted_by, earlier.idempotency_key) == (
        identity.key_id,
        idempotency_key,
    ):
        return
    raise Conflict(
        f"an identical earlier action ({earlier.id}) was started and never reported, so nobody knows "
        "whether it ran; reconcile it first (POST /v1/actions/"
        f"{earlier.id}/reconcile with outcome succeeded or failed), then retry",
        code="outcome_unknown",
        action_id=earlier.id,
        status=_UNKNOWN,
    )


# -- the execution lease (driven by the sweeper, like approval expiry) ------------------------
def lease_due(store: Store, now: float, batch: int, lease: float, on_expired: Callable[[Any, int], None]) -> int:
    """Mark up to `batch` started actions whose lease (`lease` seconds, for the reason)
    ran out `outcome_unknown`, calling `on_expired(row, seq)` after each commit. Returns how many."""
    return sweep_due(store, batch, lambda conn: _expire_next_lease(store, conn, now, lease), on_expired)


def _expire_next_lease(store: Store, conn: Connection, now: float, lease: float) -> tuple[Any, int] | None:
    repos = Repositories.sql(conn)
    action_id = repos.actions.next_lease_due(_EXECUTING, now)
    if action_id is None:
        return None
    row = repos.actions.get(action_id)
    if row is None or row.status != _EXECUTING or row.lease_expires_at is None or row.lease_expires_at > now:
        return None
    reason = (
        f"No result within the execution lease ({humanize(round(lease, 3))} after the start or the last "
        "heartbeat): whether it ran is unknown; reconcile it before an identical retry"
    )
    values = {"status": _UNKNOWN, "version": row.version + 1, "updated_at": now}
    if not repos.actions.compare_and_set(action_id, statuses=[_EXECUTING], version=row.version, values=values):
        return None
    seq = audit.append(
        conn,
        event=LEASE_EXPIRED,
        ts=now,
        action_id=action_id,
        actor=LEASE_ACTOR,
        data={"status": _UNKNOWN, "reason": reason, "lease_expires_at": row.lease_expires_at},
    )
    store.notify(conn, type=LEASE_EXPIRED, action_id=action_id, seq=seq)
    return repos.actions.get(action_id), seq


def next_lease_end(conn: Connection) -> float | None:
    return Repositories.sql(conn).actions.earliest_lease(_EXECUTING)

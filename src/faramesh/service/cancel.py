"""Cancel: the agent that submitted an action (or an admin) withdraws it while it is
held or approved and not yet run, so no person approves something nothing will execute.

`cancelled` is final: a later approve, deny or result is a 409. The same transition ends
an approval that lapsed unused (see `expiry.lapse_due`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faramesh import audit
from faramesh.errors import Conflict, Forbidden, KeyRevoked
from faramesh.model import CANCELLABLE, Identity, Status
from faramesh.service import access, keys
from faramesh.service.approvals import check_reason
from faramesh.storage import Store
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories

if TYPE_CHECKING:
    from faramesh.service.governor import Governor

EVENT = "action.cancelled"
_CANCELLABLE = [s.value for s in CANCELLABLE]


def cancel(g: Governor, identity: Identity, action_id: str, *, reason: Any = None) -> tuple[Any, int]:
    """Withdraw the action; (the action after it, its audit seq)."""
    why = check_reason(reason)
    now = g.clock()

    def txn(conn: Connection) -> tuple[Any, int]:
        # The key was checked when the request arrived; one revoked since must not cancel.
        if not keys.still_active(conn, identity.key_id):
            raise KeyRevoked("this API key was revoked; the action was not cancelled")
        row = access.load(conn, action_id)
        if row is None or not access.visible(row, identity):
            raise access.not_found(action_id)
        if row.submitted_by != identity.key_id and not identity.is_admin:
            raise Forbidden("only the agent that submitted an action, or an admin, can cancel it")
        by = "the agent" if row.submitted_by == identity.key_id else identity.label
        return cancel_row(conn, g.store, row, actor=identity.label, reason=why or f"Cancelled by {by}", now=now)

    return g.store.write(txn)


def cancel_row(conn: Connection, store: Store, row: Any, *, actor: str, reason: str, now: float) -> tuple[Any, int]:
    """Move `row` to cancelled inside the caller's transaction (compare-and-set)."""
    repos = Repositories.sql(conn)
    current = Status(row.status)
    if current not in CANCELLABLE:
        raise Conflict(
            f"cannot cancel: action is {current.value}; only actions pending approval, or approved "
            "and not yet run, can be cancelled",
            status=current.value,
        )
    values = {
        "status": Status.CANCELLED.value,
        "decided_by": actor,
        "decision_reason": reason,
        "approval_token": None,
        "version": row.version + 1,
        "updated_at": now,
    }
    if not repos.actions.compare_and_set(row.id, statuses=_CANCELLABLE, version=row.version, values=values):
        fresh = repos.actions.current_status(row.id)
        raise Conflict(f"cannot cancel: the action changed meanwhile (now {fresh})", status=fresh)
    seq = audit.append(
        conn,
        event=EVENT,
        ts=now,
        action_id=row.id,
        actor=actor,
        data={"status": Status.CANCELLED.value, "previous": current.value, "reason": reason},
    )
    store.notify(conn, type=EVENT, action_id=row.id, seq=seq)
    fresh_row = repos.actions.get(row.id)
    return fresh_row, seq

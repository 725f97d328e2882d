"""Whether the submitting agent is still there, and whether it has seen its approval.

Presence: while the agent that submitted a held action has a wait open on it, the wait
refreshes `agent_seen_at` every `HEARTBEAT` seconds (on whichever replica holds it), so
"the agent is waiting" means "seen within the last `WINDOW` seconds". That lets an
approver tell whether approving does anything now.

Pick-up: an approval is permission to run now. The first time the submitting agent reads
its action as approved (a wait, a read, or a retry re-attached to it), the pick-up is
recorded; an approval nobody picked up lapses after the server's `approval_lapse` (see
`expiry.lapse_due`). The answer that shows an agent "approved" is only given after the
pick-up is committed, so a lapse and a pick-up never both win.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faramesh import audit
from faramesh.model import Identity, Status
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories

if TYPE_CHECKING:
    from faramesh.service.governor import Governor

HEARTBEAT = 10.0  # seconds between refreshes while a wait is open
WINDOW = 30.0  # an agent seen this recently counts as waiting
PICKED_UP = "action.picked_up"
_APPROVED = Status.APPROVED.value


def is_submitter(row: Any, identity: Identity) -> bool:
    return bool(row.submitted_by == identity.key_id)


def agent_waiting(row: Any, now: float) -> bool:
    seen = getattr(row, "agent_seen_at", None)
    return seen is not None and now - float(seen) <= WINDOW


def touch(g: Governor, identity: Identity, action_id: str) -> None:
    """The submitting agent is waiting on the action now (others' waits are not presence)."""
    now = g.clock()

    def txn(conn: Connection) -> None:
        repos = Repositories.sql(conn)
        row = repos.actions.get(action_id)
        if row is not None and is_submitter(row, identity):
            repos.actions.touch_presence(action_id, now)

    g.store.write(txn)


def needs_pickup(row: Any, identity: Identity) -> bool:
    return row.status == _APPROVED and row.picked_up_at is None and is_submitter(row, identity)


def pick_up(g: Governor, identity: Identity, row: Any) -> tuple[Any, int | None]:
    """Record that the submitting agent saw its approval: (the row as it is after that,
    the pick-up's audit seq). The row is cancelled instead, with no seq, when the approval
    lapsed just before."""
    now = g.clock()
    return g.store.write(lambda conn: pick_up_in(conn, g, identity, row, now))


def pick_up_in(conn: Connection, g: Governor, identity: Identity, row: Any, now: float) -> tuple[Any, int | None]:
    """`pick_up` inside the caller's transaction."""
    repos = Repositories.sql(conn)
    values = {"picked_up_at": now, "agent_seen_at": now, "version": row.version + 1, "updated_at": now}
    if not repos.actions.compare_and_set(row.id, statuses=[_APPROVED], version=row.version, values=values):
        fresh = repos.actions.get(row.id)
        if fresh is not None and needs_pickup(fresh, identity):  # changed by something else: try once more
            return pick_up_in(conn, g, identity, fresh, now)
        return fresh, None
    seq = audit.append(
        conn, event=PICKED_UP, ts=now, action_id=row.id, actor=identity.label, data={"status": _APPROVED}
    )
    g.store.notify(conn, type=PICKED_UP, action_id=row.id, seq=seq)
    return repos.actions.get(row.id), seq

"""Re-attach: an identical retry of a held call picks up the action it repeats.

An LLM whose tool call timed out usually makes the same call again. When the policy
would hold the new call for approval and the same API key already has an action with the
same request hash (agent, tool, operation, params and context, as submitted) that is
still pending approval, or approved and not yet run, the submit answers with that action
(`"reattached": true`) instead of creating a second one: an approval covers one
execution. Never for actions allowed outright (two identical small refunds are two
refunds), never after the result is reported, and never when the call opts out
(`"reattach": false`) or differs in any field (an invoice id keeps two genuine
requests apart).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faramesh import audit
from faramesh.model import Identity, Status
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories

if TYPE_CHECKING:
    from faramesh.storage import Store

EVENT = "action.reattached"
_STATUSES = (Status.PENDING_APPROVAL.value, Status.APPROVED.value)
# Times a held row that changed under the attach (a vote, a pick-up) is looked up again.
_TRIES = 5


def find_and_attach(
    conn: Connection, store: Store, identity: Identity, agent_id: str, rhash: str, now: float
) -> tuple[Any, int] | None:
    """Attach this submit to the held action it repeats, if there is one: (the action, the
    audit seq). A concurrent write to that row (another replica picking up or deciding it)
    makes the attach look again instead of giving up, so a retry never becomes a second
    action because of a race; None when no held action is left to attach to."""
    for _ in range(_TRIES):
        row = find(conn, identity, agent_id, rhash)
        if row is None:
            return None
        attached = attach(conn, store, identity, row, now)
        if attached is not None:
            return attached
    return None


def find(conn: Connection, identity: Identity, agent_id: str, rhash: str) -> Any | None:
    """The held action this submit repeats, if any (only the same key's: it alone may
    wait on it and report its result)."""
    row = Repositories.sql(conn).actions.find_reattachable(agent_id, rhash, _STATUSES)
    if row is None or row.submitted_by != identity.key_id:
        return None
    return row


def attach(conn: Connection, store: Store, identity: Identity, row: Any, now: float) -> tuple[Any, int] | None:
    """Hand `row` to the retrying agent: it is present again, and an approval it now
    receives is picked up. None when the row changed meanwhile (submit a new action)."""
    repos = Repositories.sql(conn)
    values: dict[str, Any] = {"agent_seen_at": now, "version": row.version + 1, "updated_at": now}
    picked_up = row.status == Status.APPROVED.value and row.picked_up_at is None
    if picked_up:
        values["picked_up_at"] = now
    if not repos.actions.compare_and_set(row.id, statuses=[row.status], version=row.version, values=values):
        return None
    seq = audit.append(
        conn,
        event=EVENT,
        ts=now,
        action_id=row.id,
        actor=identity.label,
        data={"status": row.status, "picked_up": picked_up},
    )
    store.notify(conn, type=EVENT, action_id=row.id, seq=seq)
    return repos.actions.get(row.id), seq

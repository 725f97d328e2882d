"""Results: the submitting agent reports once how an allowed or approved action went."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from faramesh import audit
from faramesh.errors import Conflict, Forbidden, InvalidInput, KeyRevoked
from faramesh.model import REPORTABLE, Identity, Status
from faramesh.service import access, keys
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories
from faramesh.validation import check_json_object, refuse_nul

if TYPE_CHECKING:
    from faramesh.service.governor import Governor

MAX_ERROR = 100_000


_REPORTABLE = [s.value for s in REPORTABLE]


def _check(success: Any, result: Any, error: Any) -> None:
    if not isinstance(success, bool):
        raise InvalidInput("success must be true or false", field="success")
    check_result(result, error)


def check_result(result: Any, error: Any) -> None:
    """A reported `result` (any JSON) and `error` (a string), as results and reconciliations take them."""
    if error is not None and not isinstance(error, str):
        raise InvalidInput("error must be a string", field="error")
    if error is not None and len(error) > MAX_ERROR:
        raise InvalidInput(f"error must be at most {MAX_ERROR} characters", field="error")
    refuse_nul(error, "error")
    if result is not None:
        check_json_object({"result": result}, "body")


def report(
    g: Governor, identity: Identity, action_id: str, *, success: Any, result: Any, error: Any
) -> tuple[Any, int, str]:
    """Record the outcome; (the action after it, its audit seq, the event)."""
    _check(success, result, error)
    now = g.clock()
    event = "action.succeeded" if success else "action.failed"
    new_status = Status.SUCCEEDED if success else Status.FAILED

    def txn(conn: Connection) -> tuple[Any, int, str]:
        repos = Repositories.sql(conn)
        # The key was checked when the request arrived; one revoked since must not report.
        if not keys.still_active(conn, identity.key_id):
            raise KeyRevoked("this API key was revoked; the result was not recorded")
        # Locked (PostgreSQL), so a concurrent start or lease expiry is seen, not raced.
        row = repos.actions.get_for_update(access.checked_id(action_id))
        if row is None or not access.visible(row, identity):
            raise access.not_found(action_id)
        if row.submitted_by != identity.key_id:
            raise Forbidden("only the agent that submitted an action can report its result")
        current = Status(row.status)
        if current not in REPORTABLE:
            raise Conflict(
                f"cannot report a result: action is {current.value}; results are accepted "
                "once, for allowed, approved or started actions",
                status=current.value,
            )
        values = {
            "status": new_status.value,
            "result": orjson.dumps(result).decode() if result is not None else None,
            "error": error,
            "version": row.version + 1,
            "updated_at": now,
        }
        if not repos.actions.compare_and_set(action_id, statuses=_REPORTABLE, version=row.version, values=values):
            fresh = repos.actions.current_status(action_id)
            raise Conflict(f"cannot report a result: the action changed meanwhile (now {fresh})", status=fresh)
        seq = audit.append(
            conn,
            event=event,
            ts=now,
            action_id=action_id,
            actor=identity.label,
            data={"status": new_status.value, "success": success, "result": result, "error": error}
            # Only after a start, so the records of the seed's flow keep their shape.
            | ({"previous": current.value} if current not in (Status.ALLOWED, Status.APPROVED) else {}),
        )
        g.store.notify(conn, type=event, action_id=action_id, seq=seq)
        return repos.actions.get(action_id), seq, event

    return g.store.write(txn)

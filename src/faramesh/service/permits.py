"""Issuing permits: the signed proof that an allowed or approved action may run, with
exactly its arguments (see faramesh/permit.py for the format and the offline check).

A permit is signed once per transition and stored on the action, not signed per read:
submit signs it for an action allowed outright (before its transaction, so the SQLite
writer does not wait on the signature), the approval that reaches the quorum signs it
for the approved arguments, and the audit record of that transition carries its SHA-256.
Reads, lists and events show the stored permit at no cost.

Permits are short-lived (`--permit-ttl`, default 5m). When the submitting agent reads
its action (a read, a wait, a re-attached retry) and the stored permit has less than
half its lifetime left, a fresh one is issued and recorded (`action.permit_renewed`),
so an agent that picks up an approval an hour later still gets a usable permit. A
renewal changes no state: it is conditional on the status and version, and does not
bump the version, so it never makes a start or a result lose a race.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from faramesh import audit
from faramesh.model import EXECUTABLE, Identity, Status
from faramesh.permit import PermitClaims, encode_permit, params_hash
from faramesh.service.permit_keys import SigningKey
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories

if TYPE_CHECKING:
    from faramesh.service.governor import Governor

RENEWED = "action.permit_renewed"
_EXECUTABLE = frozenset(s.value for s in EXECUTABLE)


def permit_sha256(permit: str) -> str:
    return hashlib.sha256(permit.encode()).hexdigest()


@dataclass(frozen=True)
class Issued:
    """A signed permit and what the action row and its audit record keep of it."""

    permit: str
    claims: PermitClaims

    def row_values(self) -> dict[str, Any]:
        return {"permit": self.permit, "permit_expires_at": float(self.claims.expires_at)}

    def audit_data(self) -> dict[str, Any]:
        # No request_hash inside: audit verify reads the top-level one as the arguments in force.
        return {"permit": {"sha256": permit_sha256(self.permit), "kid": self.claims.kid, "exp": self.claims.expires_at}}


def issue(
    g: Governor,
    *,
    action_id: str,
    tool: str,
    operation: str,
    params: Any,
    request_hash: str,
    policy_hash: str,
    agent_id: str,
    status: Status,
    approvers: Iterable[str],
    now: float,
    key: SigningKey | None = None,
) -> Issued:
    """Sign a permit for one run of the action with `params`, valid for the server's permit TTL.
    Inside a write transaction, pass `key` (fetched before it): fetching may write."""
    key = key or g.signing_keys.signing_key()
    issued_at = math.floor(now)
    claims = PermitClaims(
        action_id=action_id,
        tool=tool,
        operation=operation,
        request_hash=request_hash,
        params_hash=params_hash(params),
        policy_hash=policy_hash,
        approvers=tuple(sorted(set(approvers))),
        agent_id=agent_id,
        status=status.value,
        issued_at=issued_at,
        expires_at=math.floor(now + g.permit_ttl),
        kid=key.kid,
    )
    return Issued(encode_permit(claims, key.key), claims)


def issue_for_row(
    g: Governor,
    row: Any,
    *,
    status: Status,
    approvers: Iterable[str],
    now: float,
    params_json: str | None = None,
    request_hash: str | None = None,
    key: SigningKey | None = None,
) -> Issued:
    """A permit for the stored action (or for the edited params about to be stored)."""
    return issue(
        g,
        action_id=row.id,
        tool=row.tool,
        operation=row.operation,
        params=orjson.loads(params_json if params_json is not None else row.params),
        request_hash=request_hash or row.request_hash,
        policy_hash=row.policy_hash,
        agent_id=row.agent_id,
        status=status,
        approvers=approvers,
        now=now,
        key=key,
    )


def needs_renewal(row: Any, identity: Identity, now: float, ttl: float) -> bool:
    """Whether the submitting agent should be handed a fresh permit for `row` now."""
    if row.status not in _EXECUTABLE or row.submitted_by != identity.key_id:
        return False
    expires = getattr(row, "permit_expires_at", None)
    return expires is None or expires - now < ttl / 2


def renew(g: Governor, identity: Identity, row: Any, approvers: Iterable[str]) -> tuple[Any, int | None]:
    """Store a fresh permit for `row` (`approvers`: whose votes count now): (the row after
    it, the renewal's audit seq). When the action changed meanwhile (started, reported,
    decided), nothing is written and the current row comes back with no seq."""
    now = g.clock()
    status = Status(row.status)
    issued = issue_for_row(g, row, status=status, approvers=approvers, now=now)

    def txn(conn: Connection) -> tuple[Any, int | None]:
        repos = Repositories.sql(conn)
        # Same status and version: the claims signed above still describe the action.
        if not repos.actions.compare_and_set(
            row.id, statuses=[status.value], version=row.version, values=issued.row_values()
        ):
            return repos.actions.get(row.id), None
        seq = audit.append(
            conn,
            event=RENEWED,
            ts=now,
            action_id=row.id,
            actor=identity.label,
            data={"status": status.value} | issued.audit_data(),
        )
        return repos.actions.get(row.id), seq

    return g.store.write(txn)

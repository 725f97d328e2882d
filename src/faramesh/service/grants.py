"""Standing grants: an approver says once "allow the same for an hour", instead of
approving every identical request.

A grant names one tool and operation, optionally one agent, and conditions on params
written with the policy's own operators (`amount_lte: 200`). A submitted action that
the policy would hold and that fits an active grant is approved at once, as
`decided_by: "grant:<id>"`, counting one use. The rules that keep a grant from
weakening the policy live here:

- it only ever turns a hold into an approval: a deny (by the policy or a limit) stays;
- it never applies to a rule that needs more than one approver;
- it applies only where its creator could have approved (the rule's approver groups,
  never the creator's own actions, never after the creator's key was revoked);
- it always expires (at most MAX_GRANT_SECONDS), and may also run out of uses.

Creating, using and revoking a grant are each recorded in the audit log.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from faramesh import audit
from faramesh.durations import humanize
from faramesh.errors import Conflict, Forbidden, InvalidInput, NotFound
from faramesh.model import Identity, Status
from faramesh.policy import Decision, Effect, Policy, PolicyError
from faramesh.policy.conditions import COMBINATORS, NAME_KEYS
from faramesh.policy.fields import condition_fields
from faramesh.policy.timing import TimingError, parse_duration
from faramesh.service import people, permits
from faramesh.service.approvals import check_reason
from faramesh.service.permit_keys import SigningKey
from faramesh.service.views import iso
from faramesh.storage import Store, approvals_repo, grants_repo
from faramesh.storage.actions_repo import Connection
from faramesh.storage.repositories import Repositories
from faramesh.validation import check_agent_id, check_json_object, normalize_name, refuse_nul

if TYPE_CHECKING:
    from faramesh.service.governor import Governor

MAX_GRANT_SECONDS = 7 * 86400  # a grant is for a session or a working week, never open-ended
MAX_CONDITIONS = 20
ACTOR_PREFIX = "grant:"


@dataclass(frozen=True)
class GrantSpec:
    """A checked grant request, before it gets an id."""

    tool: str
    operation: str
    agent_id: str | None
    conditions: dict[str, Any]
    expires_in: float
    max_uses: int | None
    reason: str


def check_spec(
    *,
    tool: Any,
    operation: Any,
    agent_id: Any = None,
    params: Any = None,
    expires_in: Any,
    max_uses: Any = None,
    reason: Any,
) -> GrantSpec:
    """Validate a grant request (422 naming the field at fault)."""
    tool_n = normalize_name(tool, "tool")
    op_n = normalize_name(operation, "operation")
    agent = check_agent_id(agent_id) if agent_id is not None else None
    conditions = check_json_object(params, "params")
    if len(conditions) > MAX_CONDITIONS:
        raise InvalidInput(f"params may hold at most {MAX_CONDITIONS} conditions", field="params")
    compile_conditions(tool_n, op_n, orjson.dumps(conditions, option=orjson.OPT_SORT_KEYS).decode())
    if expires_in is None:
        raise InvalidInput("expires_in is required: a grant always expires (e.g. 1h)", field="expires_in")
    try:
        seconds = parse_duration(expires_in)
    except TimingError as exc:
        raise InvalidInput(f"expires_in: {exc.message}", field="expires_in") from None
    if seconds > MAX_GRANT_SECONDS:
        raise InvalidInput(
            f"expires_in must be at most {humanize(MAX_GRANT_SECONDS)}; create a new grant when it ends",
            field="expires_in",
        )
    if max_uses is not None and (not isinstance(max_uses, int) or isinstance(max_uses, bool) or max_uses < 1):
        raise InvalidInput("max_uses must be a whole number of at least 1", field="max_uses")
    text = check_reason(reason)
    if not text:
        raise InvalidInput("reason is required: say why this is allowed without asking", field="reason")
    return GrantSpec(tool_n, op_n, agent, conditions, seconds, max_uses, text)


@functools.lru_cache(maxsize=256)
def compile_conditions(tool: str, operation: str, conditions_json: str) -> Policy:
    """The grant as a one-rule policy (allow when it fits, deny otherwise), compiled by the
    policy's own compiler so its operators mean exactly what they mean in a policy."""
    conditions = orjson.loads(conditions_json)
    for key in conditions:
        refuse_nul(key, "params")
        if key in NAME_KEYS:
            raise InvalidInput(f"params.{key}: the tool and operation are the grant's own fields", field="params")
    document = {
        "default": "deny",
        "rules": [{"id": "grant", "match": {"tool": tool, "operation": operation, **conditions}, "allow": True}],
    }
    try:
        policy = Policy.from_yaml(orjson.dumps(document), source="grant")
    except PolicyError as exc:
        problem = exc.problems[0]
        where = problem.key.removeprefix("rules[0].match.") if problem.key.startswith("rules[0].match.") else ""
        hint = f" ({problem.hint})" if problem.hint else ""
        raise InvalidInput(
            f"params{'.' + where if where else ''}: {problem.message}{hint}",
            field=f"params.{where}" if where else "params",
        ) from None
    outside = [f for f in condition_fields(policy.rules[0].spec["match"]) if not f.startswith("params.")]
    if outside:
        raise InvalidInput(
            f"grant conditions may only test params, not {', '.join(outside)}",
            field="params",
        )
    if any(key in COMBINATORS for key in conditions) and not condition_fields(policy.rules[0].spec["match"]):
        raise InvalidInput("params: a combinator needs at least one condition inside", field="params")
    return policy


# -- create, list, revoke ------------------------------------------------------------
def create(store: Store, identity: Identity, spec: GrantSpec, *, now: float, action_id: str | None = None) -> Any:
    if not identity.can_decide:
        raise Forbidden("only approver and admin keys can grant")
    grant_id = secrets.token_hex(8)

    def txn(conn: Connection) -> Any:
        if not people.still_active(conn, identity):  # revoked, or removed from their groups, since
            raise Forbidden("you may no longer grant: your key was revoked or your groups changed")
        grants_repo.insert(
            conn,
            {
                "id": grant_id,
                "tool": spec.tool,
                "operation": spec.operation,
                "agent_id": spec.agent_id,
                "conditions": orjson.dumps(spec.conditions).decode(),
                "reason": spec.reason,
                "created_by": identity.key_id,
                "created_by_label": identity.label,
                "created_at": now,
                "expires_at": now + spec.expires_in,
                "max_uses": spec.max_uses,
                "uses": 0,
                "action_id": action_id,
            },
        )
        audit.append(
            conn,
            event="grant.created",
            ts=now,
            actor=identity,
            data={
                "grant_id": grant_id,
                "tool": spec.tool,
                "operation": spec.operation,
                "agent_id": spec.agent_id,
                "params": spec.conditions,
                "expires_at": now + spec.expires_in,
                "max_uses": spec.max_uses,
                "reason": spec.reason,
                "from_action": action_id,
            },
        )
        return grants_repo.get(conn, grant_id)

    return store.write(txn)


def list_all(store: Store, identity: Identity, *, active_at: float | None = None) -> list[Any]:
    if not identity.can_decide:
        raise Forbidden("only approver and admin keys can list grants")
    return store.read(lambda conn: grants_repo.list_grants(conn, active_at=active_at))


def revoke(store: Store, identity: Identity, grant_id: Any, *, now: float) -> Any:
    """Revoke a grant (any approver or admin may: stopping one never weakens the policy)."""
    if not identity.can_decide:
        raise Forbidden("only approver and admin keys can revoke grants")
    if not isinstance(grant_id, str) or not grant_id or len(grant_id) > 32:
        raise NotFound("no such grant", field="id")
    refuse_nul(grant_id, "id")

    def txn(conn: Connection) -> Any:
        row = grants_repo.get(conn, grant_id)
        if row is None:
            raise NotFound(f"no grant with id {grant_id!r}", field="id")
        if not grants_repo.revoke(conn, grant_id, now=now, by=identity.label):
            raise Conflict(f"grant {grant_id} was already revoked", field="id")
        audit.append(conn, event="grant.revoked", ts=now, actor=identity, data={"grant_id": grant_id, "uses": row.uses})
        return grants_repo.get(conn, grant_id)

    return store.write(txn)


def to_view(row: Any, now: float) -> dict[str, Any]:
    """A grant as the API and the dashboard show it."""
    uses_left = None if row.max_uses is None else max(0, int(row.max_uses) - int(row.uses))
    active = row.revoked_at is None and row.expires_at > now and uses_left != 0
    return {
        "id": row.id,
        "tool": row.tool,
        "operation": row.operation,
        "agent_id": row.agent_id,
        "params": orjson.loads(row.conditions),
        "reason": row.reason,
        "created_by": row.created_by_label,
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "max_uses": row.max_uses,
        "uses": int(row.uses),
        "uses_left": uses_left,
        "revoked_at": iso(row.revoked_at),
        "revoked_by": row.revoked_by,
        "action_id": row.action_id,
        "active": active,
    }


# -- applying a grant at submit ------------------------------------------------------
def find_applicable(
    conn: Connection,
    decision: Decision,
    *,
    tool: str,
    operation: str,
    agent_id: str,
    params: dict[str, Any],
    context: dict[str, Any],
    agent: dict[str, Any],
    submitted_by: str,
    now: float,
) -> Any | None:
    """The grant that approves this held action at once, or None.

    Called inside the submit transaction, after the policy and the limits decided to
    hold it. Any doubt (an unreadable grant, a failed evaluation) means no grant.
    """
    if decision.effect is not Effect.REQUIRE_APPROVAL:
        return None  # a grant never changes a deny (or anything but a hold)
    spec = decision.approval
    if spec is not None and spec.quorum > 1:
        return None  # a rule needing several approvers is decided by several people
    groups_needed = set(spec.approvers) if spec is not None else set()
    for row in grants_repo.candidates(conn, tool=tool, operation=operation, agent_id=agent_id, now=now):
        if row.created_by == submitted_by:
            continue  # no key approves what it submitted, directly or by grant
        creator = Repositories.sql(conn).keys.get(row.created_by)
        if creator is None or creator.revoked_at is not None:
            continue
        if creator.agent_id is not None and creator.agent_id == agent_id:
            continue
        if groups_needed and not groups_needed & set(orjson.loads(creator.groups or "[]")):
            continue  # the creator could not have approved this one
        if _fits(row, tool=tool, operation=operation, params=params, context=context, agent=agent, now=now):
            return row
    return None


def _fits(
    row: Any,
    *,
    tool: str,
    operation: str,
    params: dict[str, Any],
    context: dict[str, Any],
    agent: dict[str, Any],
    now: float,
) -> bool:
    try:
        policy = compile_conditions(row.tool, row.operation, row.conditions)
        decision = policy.evaluate(
            tool=tool,
            operation=operation,
            params=params,
            context=context,
            agent=agent,
            now=datetime.fromtimestamp(now, UTC),
        )
    except Exception:  # fail closed: a grant that cannot be read approves nothing
        return False
    return decision.effect is Effect.ALLOW


def approve_by_grant(
    g: Governor, conn: Connection, action_id: str, grant: Any, now: float, key: SigningKey | None = None
) -> int:
    """Approve the just-recorded held action by `grant`, counting one use; returns the
    approval's audit seq. Inside the submit transaction: if the use cannot be counted
    (another submit took the last one), the whole submit is retried by nobody, so this
    raises and the caller records the action as held instead."""
    repos = Repositories.sql(conn)
    if not grants_repo.use(conn, grant.id, uses=int(grant.uses), now=now):
        raise _GrantGone()
    row = repos.actions.get(action_id)
    if row is None:
        raise _GrantGone()
    actor = ACTOR_PREFIX + grant.id
    reason = f"Approved by standing grant {grant.id} ({grant.created_by_label}): {grant.reason}"
    values = {
        "status": Status.APPROVED.value,
        "decided_by": actor,
        "decision_reason": reason,
        "approval_token": None,
        # The agent learns of the approval in the submit answer itself: picked up at once,
        # so it never lapses (see service/presence.py).
        "picked_up_at": now,
        "version": row.version + 1,
        "updated_at": now,
    }
    # Approved actions carry a permit for exactly these arguments, naming the grant.
    permit = permits.issue_for_row(g, row, status=Status.APPROVED, approvers=[actor], now=now, key=key)
    values |= permit.row_values()
    if not repos.actions.compare_and_set(
        action_id, statuses=[Status.PENDING_APPROVAL.value], version=row.version, values=values
    ):
        raise _GrantGone()
    approvals_repo.insert_vote(
        conn,
        action_id=action_id,
        approver=actor,
        approver_label=actor,
        approve=True,
        reason=reason,
        request_hash=row.request_hash,
        created_at=now,
    )
    seq = audit.append(
        conn,
        event="action.approved",
        ts=now,
        action_id=action_id,
        actor=actor,
        data={
            "status": Status.APPROVED.value,
            "approve": True,
            "reason": reason,
            "request_hash": row.request_hash,
            "approvals": 1,
            "quorum": int(row.approval_quorum),
            "grant_id": grant.id,
        }
        | permit.audit_data(),
    )
    audit.append(
        conn,
        event="grant.used",
        ts=now,
        actor=actor,
        data={"grant_id": grant.id, "action_id": action_id, "uses": int(grant.uses) + 1},
    )
    g.store.notify(conn, type="action.approved", action_id=action_id, seq=seq)
    return seq


class _GrantGone(Exception):
    """The grant was used up or revoked between reading it and counting the use."""


def try_grant(
    g: Governor,
    conn: Connection,
    decision: Decision,
    *,
    action_id: str,
    tool: str,
    operation: str,
    agent_id: str,
    params: dict[str, Any],
    context: dict[str, Any],
    agent: dict[str, Any],
    submitted_by: str,
    now: float,
    key: SigningKey | None = None,
) -> int | None:
    """Approve the held action just recorded if a grant fits: the approval's audit seq, or None.

    Runs in a SAVEPOINT, so a grant that ran out meanwhile leaves the action held and
    the submit's own records intact.
    """
    try:
        with conn.begin_nested():
            grant = find_applicable(
                conn,
                decision,
                tool=tool,
                operation=operation,
                agent_id=agent_id,
                params=params,
                context=context,
                agent=agent,
                submitted_by=submitted_by,
                now=now,
            )
            if grant is None:
                return None
            return approve_by_grant(g, conn, action_id, grant, now, key)
    except _GrantGone:
        return None


# -- "approve, and allow the same for ..." -------------------------------------------
_ROOTS = ("params", "context", "agent")


def same_as(params: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Conditions that allow "the same" as `params`: each params field the rule tests, at
    most this value for a number and exactly this value otherwise. With no such field,
    every top-level scalar param must be exactly as now (never "anything goes")."""
    conditions: dict[str, Any] = {}
    tested = [f.removeprefix("params.") for f in fields if f.startswith("params.")]
    exact = not tested
    if exact:
        tested = [k for k, v in params.items() if isinstance(v, (str, int, float, bool))]
    for path in tested:
        value = _lookup(params, path)
        if value is None:
            continue
        name = f"params.{path}" if path.split(".")[0] in _ROOTS else path
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not exact:
            conditions[f"{name}_lte"] = value
        elif isinstance(value, (str, bool)):
            conditions[f"{name}_eq"] = value
    return conditions


def _lookup(params: dict[str, Any], path: str) -> Any:
    cur: Any = params
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def describe(conditions: dict[str, Any]) -> str:
    """`amount ≤ 150 · currency = "EUR"`: a grant's conditions as a person reads them."""
    signs = {"lte": "≤", "lt": "<", "gte": "≥", "gt": ">", "eq": "=", "ne": "≠", "in": "in", "not_in": "not in"}
    parts = []
    for key, value in conditions.items():
        name, _, op = key.rpartition("_")
        if op == "in" and name.endswith("_not"):
            name, op = name.removesuffix("_not"), "not_in"
        sign = signs.get(op)
        shown = orjson.dumps(value).decode() if isinstance(value, str) else str(value)
        parts.append(f"{name} {sign} {shown}" if sign and name else f"{key}: {shown}")
    return " · ".join(parts) if parts else "any arguments"

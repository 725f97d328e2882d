"""Deciding several held actions in one step, each vote bound to the arguments the
approver saw for that row (its request hash): a row whose arguments changed meanwhile
is refused and reported, and the others are decided one by one, each in its own
transaction, under the usual rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from faramesh.errors import Conflict, ErrorCode, FarameshError, InvalidInput
from faramesh.model import Identity, Status

if TYPE_CHECKING:
    from faramesh.service.governor import Governor

MAX_BULK = 200
_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Pick:
    action_id: str
    request_hash: str


@dataclass(frozen=True)
class Outcome:
    """What happened to one picked action: `result` is approved, denied, recorded (an
    approval counted, more needed), changed (refused: its arguments changed) or refused."""

    action_id: str
    result: str
    message: str
    label: str = ""

    @property
    def decided(self) -> bool:
        return self.result in ("approved", "denied", "recorded")


def parse_pick(value: str) -> Pick:
    """`<action id>:<request hash>`, as each row's checkbox carries it."""
    action_id, _, rhash = value.partition(":")
    if not action_id or len(action_id) > 64 or not _HASH.fullmatch(rhash):
        raise InvalidInput("each selected row must carry <action id>:<request hash>", field="pick")
    return Pick(action_id, rhash)


def decide_many(
    g: Governor, identity: Identity, picks: list[Pick], *, approve: bool, reason: str | None
) -> list[Outcome]:
    if not picks:
        raise InvalidInput("select at least one action", field="pick")
    if len(picks) > MAX_BULK:
        raise InvalidInput(f"at most {MAX_BULK} actions at once", field="pick")
    if not approve and not (reason and reason.strip()):
        raise InvalidInput("a reason is required to deny", field="reason")
    seen: set[str] = set()
    out = []
    for pick in picks:
        if pick.action_id in seen:
            continue
        seen.add(pick.action_id)
        out.append(_one(g, identity, pick, approve=approve, reason=reason))
    return out


def _one(g: Governor, identity: Identity, pick: Pick, *, approve: bool, reason: str | None) -> Outcome:
    decide = g.approve if approve else g.deny
    try:
        action = decide(identity, pick.action_id, reason=reason, expected_hash=pick.request_hash)
    except Conflict as exc:
        if exc.code is ErrorCode.REQUEST_HASH_MISMATCH:
            return Outcome(
                pick.action_id,
                "changed",
                "Not decided: its arguments changed after you loaded the queue. Review it and decide again.",
            )
        return Outcome(pick.action_id, "refused", f"Not decided: {exc.message}")
    except FarameshError as exc:
        return Outcome(pick.action_id, "refused", f"Not decided: {exc.message}")
    label = f"{action['tool']} {action['operation']}"
    if action["status"] == Status.PENDING_APPROVAL.value:
        approval = action.get("approval") or {}
        counted, quorum = approval.get("counted", 0), approval.get("quorum", 1)
        return Outcome(pick.action_id, "recorded", f"Your approval is recorded: {counted} of {quorum}.", label)
    verb = "Approved" if approve else "Denied"
    return Outcome(pick.action_id, action["status"], f"{verb}.", label)

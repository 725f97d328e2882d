"""Approve with edits: what changed, the request hash of the edited arguments, and an
approval bound to exactly the arguments the approver reviewed.

The approve transition itself (re-evaluating the edited params, resetting votes) is in
`approvals.py`; this module is what a reviewing approver sees before it, and the check
that what is approved is what was reviewed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from faramesh.canonical import request_hash
from faramesh.errors import InvalidInput
from faramesh.model import Identity
from faramesh.validation import check_json_object

if TYPE_CHECKING:
    from faramesh.service.governor import Governor


@dataclass(frozen=True)
class Change:
    """One changed value: `path` is dotted (`shipping.city`); None means absent."""

    path: str
    before: str | None
    after: str | None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "changed"


def _text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def diff(before: Any, after: Any, prefix: str = "") -> list[Change]:
    """Every difference between two params objects, nested objects by their dotted paths."""
    changes: list[Change] = []
    keys = list(before) + [k for k in after if k not in before]
    for key in keys:
        path = f"{prefix}{key}"
        old, new = before.get(key, _ABSENT), after.get(key, _ABSENT)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += diff(old, new, path + ".")
        elif old is _ABSENT:
            changes.append(Change(path, None, _text(new)))
        elif new is _ABSENT:
            changes.append(Change(path, _text(old), None))
        elif _text(old) != _text(new) or type(old) is not type(new):
            changes.append(Change(path, _text(old), _text(new)))
    return changes


_ABSENT = object()


def check_params(params: Any) -> dict[str, Any]:
    """Edited params must be a JSON object the API would accept (depth, NUL, sizes)."""
    return check_json_object(params, "params")


def edited_hash(action: dict[str, Any], params: dict[str, Any]) -> str:
    """The request hash the action would have with `params` (what an approval of them binds)."""
    return request_hash(
        agent_id=action["agent_id"],
        tool=action["tool"],
        operation=action["operation"],
        params=params,
        context=action["context"],
    )


def approve_edited(
    g: Governor,
    identity: Identity,
    action_id: str,
    *,
    params: Any,
    shown_hash: str,
    reviewed_hash: str,
    reason: str | None,
) -> dict[str, Any]:
    """Approve `params` in place of the action's arguments, only if they are exactly the
    arguments the approver reviewed (`reviewed_hash`) and the action still has the
    arguments the review started from (`shown_hash`)."""
    checked = check_json_object(params, "params")
    action = g.get(identity, action_id)
    if not hmac.compare_digest(edited_hash(action, checked), reviewed_hash):
        raise InvalidInput(
            "these are not the arguments you reviewed; review the changes again before approving", field="params"
        )
    return g.approve(identity, action_id, reason=reason, params=checked, expected_hash=shown_hash)

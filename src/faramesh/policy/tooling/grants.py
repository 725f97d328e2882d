"""Standing grants in the offline tools: `policy replay --grants FILE` and
`policy prove --grants FILE` judge a policy as the server applies it with those grants.

A grant turns a hold into an approval where it fits (see faramesh.service.grants): only
for a rule that requires approval from one approver (or such a default), never a deny.
Here that is a policy of its own: before each such rule, one allow rule per grant that
matches only where both the rule and the grant match, so every other decision, and the
order rules are tried in, stays as it was. The server's other conditions (the grant's
creator may approve this rule's groups, its uses and its expiry) are not known offline:
every grant in the file counts as standing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from faramesh.policy.model import Effect
from faramesh.policy.names import NameMatcher, normalize_name
from faramesh.policy.parser import load_plain
from faramesh.policy.policy import Policy

_NAME_KEYS = ("tool", "operation", "op")
_RULE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.:/-]")


class GrantsError(ValueError):
    """The grants file could not be used; the message says why."""


def load_grants(text: str) -> list[dict[str, Any]]:
    """Grants as `GET /v1/grants` answers (`{"grants": [...]}`) or a list of them; those
    marked `"active": false` (expired, used up, revoked) are left out."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise GrantsError(f"not valid JSON: {exc}") from None
    if isinstance(data, Mapping) and "grants" in data:
        data = data["grants"]
    if not isinstance(data, list):
        raise GrantsError('expected {"grants": [...]} (GET /v1/grants) or a list of grants')
    out = []
    for i, grant in enumerate(data):
        if not isinstance(grant, Mapping):
            raise GrantsError(f"grants[{i}] is not an object")
        for key in ("tool", "operation"):
            if not isinstance(grant.get(key), str) or not grant[key]:
                raise GrantsError(f"grants[{i}].{key} is required")
        if grant.get("params") is not None and not isinstance(grant["params"], Mapping):
            raise GrantsError(f"grants[{i}].params must be an object of conditions")
        if grant.get("active", True) is False:
            continue
        out.append(dict(grant))
    return out


def with_grants(policy: Policy, grants: Sequence[Mapping[str, Any]]) -> Policy:
    """`policy` as the server applies it with these standing grants."""
    if not grants:
        return policy
    document = load_plain(policy.source_text)
    if not isinstance(document, Mapping):
        return policy
    raw_rules = document.get("rules") or []
    rules: list[Any] = []
    for raw, rule in zip(raw_rules, policy.rules, strict=False):
        approval = rule.approval
        if rule.effect is Effect.REQUIRE_APPROVAL and (approval is None or approval.quorum <= 1):
            rules += [g for g in (_granted(raw, rule.id, grant, i) for i, grant in enumerate(grants)) if g]
        rules.append(raw)
    if policy.default is Effect.REQUIRE_APPROVAL:
        rules += [_granted({}, "default", grant, i) for i, grant in enumerate(grants)]
    combined = dict(document) | {"rules": rules}
    text = json.dumps(combined, ensure_ascii=False)
    return Policy.from_yaml(text, source=f"{policy.source} with {len(grants)} grant(s)")


def _granted(raw: Any, rule_id: str, grant: Mapping[str, Any], index: int) -> dict[str, Any] | None:
    """An allow rule matching where rule `raw` and the grant both match; None when they never can."""
    if not isinstance(raw, Mapping):
        return None
    match = raw.get("match") or {}
    if not isinstance(match, Mapping):
        return None
    tool, operation = str(grant["tool"]), str(grant["operation"])
    if not (_names_allow(match.get("tool"), tool) and _names_allow(match.get("operation", match.get("op")), operation)):
        return None
    parts: list[Any] = []
    own = {k: v for k, v in match.items() if k not in _NAME_KEYS}
    if own:
        parts.append(own)
    conditions = dict(grant.get("params") or {})
    if conditions:
        parts.append(conditions)
    if grant.get("agent_id"):
        parts.append({"agent.id_eq": grant["agent_id"]})
    granted: dict[str, Any] = {
        "id": _RULE_ID_CHARS.sub("-", f"{rule_id}/grant:{grant.get('id') or index}")[:128],
        "match": {"tool": tool, "operation": operation} | ({"all": parts} if parts else {}),
        "allow": True,
        "reason": f"Standing grant {grant.get('id') or index}: {grant.get('reason') or 'allowed without asking'}",
    }
    if "during" in raw:
        granted["during"] = raw["during"]
    return granted


def _names_allow(pattern: Any, name: str) -> bool:
    """Does a rule's tool/operation condition (absent, a name, a glob or a list) accept `name`?"""
    if pattern is None:
        return True
    patterns = pattern if isinstance(pattern, list) else [pattern]
    try:
        return NameMatcher([str(p) for p in patterns])(normalize_name(name))
    except Exception:
        return False

"""What changed between two policies, rule by rule.

Rules are paired by id. Rules without an explicit id are named by position
(``rules[3]``), which shifts when a rule is inserted, so those are paired
first with an unchanged rule of the other side, then by position. The
comparison uses each rule's normalised form (what the policy hash covers), so
reformatting, comments and key order never show up as changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from faramesh.policy.model import Rule
from faramesh.policy.policy import Policy

AUTO_ID_PREFIX = "rules["


@dataclass
class RuleChange:
    kind: str  # added | removed | changed | moved
    rule_id: str
    old_line: int | None = None
    new_line: int | None = None
    old_position: int | None = None
    new_position: int | None = None
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rule_id": self.rule_id,
            "old_line": self.old_line,
            "new_line": self.new_line,
            "old_position": self.old_position,
            "new_position": self.new_position,
            "details": list(self.details),
        }


@dataclass
class PolicyDiff:
    old_hash: str
    new_hash: str
    settings: list[str] = field(default_factory=list)  # default, name, version, description
    rules: list[RuleChange] = field(default_factory=list)

    @property
    def same_behaviour(self) -> bool:
        return self.old_hash == self.new_hash

    @property
    def empty(self) -> bool:
        return not self.settings and not self.rules

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_hash": self.old_hash,
            "new_hash": self.new_hash,
            "same_behaviour": self.same_behaviour,
            "settings": list(self.settings),
            "rules": [r.to_dict() for r in self.rules],
        }

    def render(self) -> str:
        lines = [f"old hash {self.old_hash[:16]}, new hash {self.new_hash[:16]}"]
        if self.empty:
            lines.append("No changes.")
            return "\n".join(lines)
        if self.same_behaviour:
            lines.append("The decisions are the same (equal hashes); only descriptive fields changed.")
        lines.extend(f"  {s}" for s in self.settings)
        for change in self.rules:
            if change.kind == "added":
                lines.append(f"+ rule {change.rule_id} (new line {change.new_line}, position {change.new_position})")
            elif change.kind == "removed":
                lines.append(f"- rule {change.rule_id} (old line {change.old_line}, position {change.old_position})")
            elif change.kind == "moved":
                lines.append(
                    f"↕ rule {change.rule_id} moved from position {change.old_position} to {change.new_position}"
                    " (earlier rules win, so this can change decisions)"
                )
            else:
                lines.append(f"~ rule {change.rule_id} (line {change.old_line} → {change.new_line})")
            lines.extend(f"    {d}" for d in change.details)
        return "\n".join(lines)


def diff_policies(old: Policy, new: Policy) -> PolicyDiff:
    out = PolicyDiff(old.hash, new.hash)
    for name in ("default", "name", "version", "description"):
        a = getattr(old, name)
        b = getattr(new, name)
        a = getattr(a, "value", a)
        b = getattr(b, "value", b)
        if a != b:
            out.settings.append(f"{name}: {_show(a)} → {_show(b)}")

    pairs = _pair(list(old.rules), list(new.rules))
    paired_old = {i for i, _ in pairs}
    paired_new = {j for _, j in pairs}
    for i, rule in enumerate(old.rules):
        if i not in paired_old:
            out.rules.append(
                RuleChange("removed", rule.id, old_line=rule.line, old_position=i + 1, details=_summary(rule))
            )
    for i, j in sorted(pairs, key=lambda p: p[1]):
        a, b = old.rules[i], new.rules[j]
        details = _rule_details(a, b)
        if a.id != b.id and not (_auto(a) and _auto(b)):  # positional ids shift with insertions
            details.insert(0, f"id: {a.id} → {b.id}")
        if details:
            out.rules.append(
                RuleChange(
                    "changed",
                    b.id,
                    old_line=a.line,
                    new_line=b.line,
                    old_position=i + 1,
                    new_position=j + 1,
                    details=details,
                )
            )
    for j, rule in enumerate(new.rules):
        if j not in paired_new:
            out.rules.append(
                RuleChange("added", rule.id, new_line=rule.line, new_position=j + 1, details=_summary(rule))
            )
    out.rules.extend(_moves(pairs, old, new))
    order = {"removed": 0, "changed": 1, "moved": 2, "added": 3}
    out.rules.sort(key=lambda c: (c.new_position or c.old_position or 0, order[c.kind]))
    return out


def _pair(old: list[Rule], new: list[Rule]) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    free_old = set(range(len(old)))
    free_new = set(range(len(new)))
    explicit_new = {r.id: j for j, r in enumerate(new) if not _auto(r)}
    for i, rule in enumerate(old):
        if not _auto(rule) and rule.id in explicit_new:
            j = explicit_new[rule.id]
            pairs.append((i, j))
            free_old.discard(i)
            free_new.discard(j)
    # Unnamed rules: the same content first, then the same position.
    for i in sorted(free_old):
        body = _body(old[i])
        match = next((j for j in sorted(free_new) if _body(new[j]) == body), None)
        if match is not None:
            pairs.append((i, match))
            free_old.discard(i)
            free_new.discard(match)
    for i in sorted(free_old):
        if _auto(old[i]) and i in free_new and _auto(new[i]):
            pairs.append((i, i))
            free_old.discard(i)
            free_new.discard(i)
    return pairs


def _moves(pairs: list[tuple[int, int]], old: Policy, new: Policy) -> list[RuleChange]:
    """Rules whose order relative to the other kept rules changed (longest kept sequence stays put)."""
    ordered = sorted(pairs)  # by old position
    seq = [j for _, j in ordered]
    keep = _longest_increasing(seq)
    out = []
    for (i, j), stays in zip(ordered, keep, strict=True):
        if not stays:
            out.append(RuleChange("moved", new.rules[j].id, old.rules[i].line, new.rules[j].line, i + 1, j + 1))
    return out


def _longest_increasing(seq: list[int]) -> list[bool]:
    n = len(seq)
    best = [1] * n
    prev = [-1] * n
    for k in range(n):
        for m in range(k):
            if seq[m] < seq[k] and best[m] + 1 > best[k]:
                best[k], prev[k] = best[m] + 1, m
    keep = [False] * n
    if n:
        k = max(range(n), key=lambda x: best[x])
        while k != -1:
            keep[k] = True
            k = prev[k]
    return keep


def _auto(rule: Rule) -> bool:
    return rule.id.startswith(AUTO_ID_PREFIX)


def _reason(rule: Rule) -> str | None:
    """The rule's own reason; None for the default one, which only repeats the (positional) id."""
    reason = rule.spec.get("reason")
    return None if reason == f"Matched rule {rule.id}" else reason


def _body(rule: Rule) -> str:
    spec = {k: v for k, v in rule.spec.items() if k not in ("id", "reason")}
    spec["reason"] = _reason(rule)
    return json.dumps(spec, sort_keys=True, default=str)


def _rule_details(a: Rule, b: Rule) -> list[str]:
    out = []
    sa, sb = dict(a.spec), dict(b.spec)
    for key in ("effect", "risk"):
        if sa.get(key) != sb.get(key):
            out.append(f"{key}: {_show(sa.get(key))} → {_show(sb.get(key))}")
    if _reason(a) != _reason(b):
        out.append(f"reason: {_show(sa.get('reason'))} → {_show(sb.get('reason'))}")
    ma, mb = sa.get("match", {}), sb.get("match", {})
    for slot in ("tool", "operation"):
        if ma.get(slot) != mb.get(slot):
            out.append(f"{slot}: {_names(ma.get(slot))} → {_names(mb.get(slot))}")
    wa = [_condition(c) for c in ma.get("where", [])]
    wb = [_condition(c) for c in mb.get("where", [])]
    out.extend(f"- condition {c}" for c in wa if c not in wb)
    out.extend(f"+ condition {c}" for c in wb if c not in wa)
    for key in ("approval", "rate_limit", "budget", "during"):
        if sa.get(key) != sb.get(key):
            out.append(f"{key}: {_show(sa.get(key))} → {_show(sb.get(key))}")
    if (a.description or None) != (b.description or None):
        out.append(f"description: {_show(a.description)} → {_show(b.description)}")
    return out


def _summary(rule: Rule) -> list[str]:
    match = rule.spec.get("match", {})
    parts = [f"{rule.effect.value}: {rule.reason}"]
    if match.get("tool"):
        parts.append(f"tool: {_names(match['tool'])}")
    if match.get("operation"):
        parts.append(f"operation: {_names(match['operation'])}")
    parts.extend(f"condition {_condition(c)}" for c in match.get("where", []))
    return parts


def _names(value: Any) -> str:
    if not value:
        return "(any)"
    return ", ".join(value)


_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "==", "ne": "!="}


def _condition(spec: Any) -> str:
    if isinstance(spec, dict) and "field" in spec:
        op = _OPS.get(spec["op"], spec["op"].replace("_", " "))
        return f"{spec['field']} {op} {json.dumps(spec['value'], ensure_ascii=False)}"
    return json.dumps(spec, sort_keys=True, ensure_ascii=False)


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)

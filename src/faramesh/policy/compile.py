"""Validate the located YAML tree and compile it into rules and a tool index.

Validation never stops at the first problem: every rule and key is checked and
all problems are reported together.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from .conditions import (
    COMBINATORS,
    EFFECT_KEYS,
    NAME_KEYS,
    RULE_KEYS,
    MatchCompiler,
    Pred,
    Reporter,
    Traced,
    canonical_scalar,
    split_key,
)
from .model import RISK_LEVELS, ApprovalSpec, BudgetSpec, Decision, Effect, LimitSpec, RateLimitSpec, Rule
from .names import NameMatcher, is_glob
from .parser import Loc, YMap, YNode, YScalar, YSeq, yaml11_hint
from .timing import TimingError, Window, parse_days, parse_duration, parse_hours, parse_tz
from .values import FieldPath, is_number, parse_path

TOP_KEYS = ("rules", "default", "version", "name", "description")
APPROVAL_KEYS = ("timeout", "quorum", "approvers", "remind_after", "escalate_after", "escalate_to")
RATE_LIMIT_KEYS = ("max", "per", "key")
BUDGET_KEYS = ("sum", "max", "per", "key")
DURING_KEYS = ("days", "hours", "tz")
DEFAULT_RISK = {Effect.ALLOW: "low", Effect.REQUIRE_APPROVAL: "medium", Effect.DENY: "high"}
RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")
DEFAULT_LIMIT_KEY = "agent.id"


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready to evaluate.

    ``tool`` is the rule's tool matcher (None: any tool). It is used to decide which
    candidate lists the rule belongs to; evaluation never calls it, because a rule
    is only ever a candidate for tools it matches.
    """

    index: int
    decision: Decision
    operation: NameMatcher | None
    tool: NameMatcher | None
    window: Window | None
    cond: Pred | None
    trace: Traced | None  # cond, also telling a recorder each condition's result


@dataclass
class CompiledPolicy:
    rules: list[Rule] = field(default_factory=list)
    compiled: list[CompiledRule] = field(default_factory=list)
    default: Effect = Effect.DENY
    name: str | None = None
    version: str | int | None = None
    description: str | None = None
    # exact (normalised) tool name -> the rules that can match it, in file order
    by_tool: dict[str, tuple[CompiledRule, ...]] = field(default_factory=dict)
    # rules with a glob tool pattern or no tool condition, in file order
    any_tool: tuple[CompiledRule, ...] = ()


def _suggest(name: str, options: tuple[str, ...]) -> str:
    found = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f"did you mean {found[0]}?" if found else "expected one of " + ", ".join(options)


class PolicyCompiler:
    def __init__(self, reporter: Reporter) -> None:
        self.r = reporter
        self.match = MatchCompiler(reporter)

    # -- top level

    def compile(self, tree: YNode | None) -> CompiledPolicy:
        out = CompiledPolicy()
        if tree is None:
            self.r.error(Loc(1, 1), "", "the policy is empty", "start with `default: deny` and a `rules:` list")
            return out
        if not isinstance(tree, YMap):
            self.r.error(
                tree.loc,
                "",
                "the policy must be a mapping with a rules: list",
                "start with `rules:` at the beginning of a line",
            )
            return out
        self._unknown_keys(tree, "", TOP_KEYS)
        default = tree.get("default")
        if default is not None:
            effect = self._effect_name(default, "default")
            if effect is not None:
                out.default = effect
        out.name = self._string(tree, "name", "")
        out.description = self._string(tree, "description", "")
        version = tree.get("version")
        if version is not None:
            if (
                isinstance(version, YScalar)
                and isinstance(version.value, str | int)
                and not isinstance(version.value, bool)
            ):
                out.version = version.value
            else:
                self.r.error(version.loc, "version", "expected a string or an integer", 'e.g. version: "1"')
        rules = tree.get("rules")
        if rules is None:
            self.r.error(
                tree.loc,
                "rules",
                "the policy has no rules: list",
                "add `rules: []` to deny everything, or a list of rules",
            )
        elif not isinstance(rules, YSeq):
            self.r.error(rules.loc, "rules", "rules must be a list", "start each rule with `- match:`")
        else:
            seen: dict[str, int] = {}
            for i, node in enumerate(rules.items):
                result = self._rule(node, i, seen)
                if result is not None:
                    out.rules.append(result[0])
                    out.compiled.append(result[1])
        if not self.r.problems:
            self._index(out)
            self._reachability(out)
        return out

    def _index(self, out: CompiledPolicy) -> None:
        exact: dict[str, list[CompiledRule]] = {}
        any_tool: list[CompiledRule] = []
        for cr, rule in zip(out.compiled, out.rules, strict=True):
            patterns = rule.spec.get("match", {}).get("tool")
            if patterns and not any(is_glob(p) for p in patterns):
                for pattern in patterns:
                    exact.setdefault(pattern, []).append(cr)
            else:
                any_tool.append(cr)
        # Per exact tool name: its own rules and the glob/any-tool rules that match the name, in file order.
        out.by_tool = {
            name: tuple(sorted(own + [g for g in any_tool if g.tool is None or g.tool(name)], key=lambda c: c.index))
            for name, own in exact.items()
        }
        out.any_tool = tuple(any_tool)

    def _reachability(self, out: CompiledPolicy) -> None:
        for i, rule in enumerate(out.rules[:-1]):
            if not rule.spec.get("match") and "during" not in rule.spec:
                later = ", ".join(r.id for r in out.rules[i + 1 :])
                self.r.warn(
                    Loc(rule.line, rule.column),
                    f"rules[{i}]",
                    f"rule {rule.id} matches every action, so these rules can never match: {later}",
                )
                return

    # -- one rule

    def _rule(self, node: YNode, i: int, seen: dict[str, int]) -> tuple[Rule, CompiledRule] | None:
        key = f"rules[{i}]"
        if not isinstance(node, YMap):
            self.r.error(node.loc, key, "a rule must be a mapping", "e.g. - match: {tool: refund}\n    allow: true")
            return None
        before = len(self.r.problems)
        misspelt_effect = False
        for name, loc, _ in node:
            if name in RULE_KEYS:
                continue
            if name in NAME_KEYS or name in COMBINATORS or split_key(name):
                self.r.error(loc, f"{key}.{name}", f"{name} is a condition, not a rule setting", "put it inside match:")
            else:
                hint = _suggest(name, RULE_KEYS)
                misspelt_effect = misspelt_effect or any(hint == f"did you mean {e}?" for e in EFFECT_KEYS)
                self.r.error(loc, f"{key}.{name}", f"unknown rule key {name!r}", hint)

        rule_id = self._rule_id(node, key, i, seen)
        effect = self._effect(node, key, report_missing=not misspelt_effect)
        compiled = None
        match = node.get("match")
        if match is not None:
            compiled = self.match.compile(match, f"{key}.match", top=True)
        reason = self._string(node, "reason", key)
        description = self._string(node, "description", key)
        risk = self._risk(node, key)
        approval = self._approval(node, key, effect)
        limits: list[LimitSpec] = []
        rate = self._rate_limit(node, key, effect, rule_id)
        if rate is not None:
            limits.append(rate)
        budget = self._budget(node, key, effect, rule_id)
        if budget is not None:
            limits.append(budget)
        window = self._during(node, key)

        if len(self.r.problems) != before or effect is None or (match is not None and compiled is None):
            return None
        reason = reason or f"Matched rule {rule_id}"
        risk = risk or DEFAULT_RISK[effect]
        if effect is Effect.REQUIRE_APPROVAL and approval is None:
            approval = ApprovalSpec()
        if approval is not None and approval.timeout_seconds is None:
            self.r.warn(
                node.loc,
                key,
                f"rule {rule_id} requires approval but sets no approval.timeout; "
                "the server's default approval timeout applies (24h unless configured)",
            )
        spec: dict[str, Any] = {
            "id": rule_id,
            "effect": effect.value,
            "reason": reason,
            "risk": risk,
            "match": compiled.spec if compiled else {},
        }
        if approval is not None:
            spec["approval"] = {
                "timeout_seconds": canonical_scalar(approval.timeout_seconds),
                "quorum": approval.quorum,
                "approvers": sorted(approval.approvers),
            }
            # Only when set, so the hash of a policy without nudges stays what it was.
            if approval.remind_after_seconds is not None:
                spec["approval"]["remind_after_seconds"] = canonical_scalar(approval.remind_after_seconds)
            if approval.escalate_after_seconds is not None:
                spec["approval"]["escalate_after_seconds"] = canonical_scalar(approval.escalate_after_seconds)
                spec["approval"]["escalate_to"] = list(approval.escalate_to)
        if rate is not None:
            spec["rate_limit"] = {
                "max": rate.max,
                "per_seconds": canonical_scalar(rate.per_seconds),
                "key": rate.key_path.text,
            }
        if budget is not None:
            spec["budget"] = {
                "sum": budget.sum_field,
                "max": canonical_scalar(budget.max),
                "per_seconds": canonical_scalar(budget.per_seconds),
                "key": budget.key_path.text,
            }
        if window is not None:
            spec["during"] = window.to_dict()
        rule = Rule(
            id=rule_id,
            effect=effect,
            reason=reason,
            risk=risk,
            line=node.loc.line,
            column=node.loc.column,
            description=description,
            approval=approval,
            limits=tuple(limits),
            spec=spec,
        )
        compiled_rule = CompiledRule(
            index=i,
            decision=rule.decision,
            operation=compiled.operation if compiled else None,
            tool=compiled.tool if compiled else None,
            window=window,
            cond=compiled.pred if compiled else None,
            trace=compiled.trace if compiled else None,
        )
        return rule, compiled_rule

    def _rule_id(self, node: YMap, key: str, i: int, seen: dict[str, int]) -> str:
        rule_id = f"rules[{i}]"
        id_node = node.get("id")
        if id_node is not None:
            value = id_node.value if isinstance(id_node, YScalar) else None
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            # `rules[i]` is accepted at position i only: it is the id the rule would get anyway
            if not isinstance(value, str) or not (RULE_ID.fullmatch(value) or value == rule_id):
                self.r.error(
                    id_node.loc,
                    f"{key}.id",
                    f"invalid rule id {value!r}",
                    "use up to 128 letters, digits and _ . : / -, starting with a letter or digit",
                )
            else:
                rule_id = value
        if rule_id in seen:
            self.r.error(
                node.key_loc("id"),
                f"{key}.id",
                f"duplicate rule id {rule_id!r}",
                f"rule ids must be unique; {rule_id!r} is already used on line {seen[rule_id]}",
            )
        else:
            seen[rule_id] = node.key_loc("id").line
        return rule_id

    def _effect(self, node: YMap, key: str, *, report_missing: bool) -> Effect | None:
        found: list[Effect] = []
        valid = True
        for name in EFFECT_KEYS:
            value = node.get(name)
            if value is None:
                continue
            child = f"{key}.{name}"
            if isinstance(value, YScalar) and value.value is True:
                found.append(Effect(name))
            elif isinstance(value, YScalar) and value.value is False:
                self.r.error(
                    value.loc,
                    child,
                    f"{name}: false has no meaning",
                    f"remove {name}: false and give the rule's effect with one of "
                    "allow: true, deny: true, require_approval: true",
                )
                valid = False
            else:
                shown = value.value if isinstance(value, YScalar) else None
                word = yaml11_hint(shown, "bool")
                message = f"{name} must be true" + (f", got the text {shown!r}" if word else "")
                self.r.error(value.loc, child, message, f"write {name}: true")
                valid = False
        if len(found) > 1:
            names = " and ".join(f"{e.value}: true" for e in found)
            self.r.error(node.loc, key, f"a rule has exactly one effect, this one has {names}", "keep only one of them")
            return None
        if not found:
            if valid and report_missing:
                self.r.error(
                    node.loc,
                    key,
                    "the rule has no effect",
                    "add one of allow: true, deny: true or require_approval: true",
                )
            return None
        return found[0]

    def _effect_name(self, node: YNode, key: str) -> Effect | None:
        value = node.value if isinstance(node, YScalar) else None
        options = tuple(e.value for e in Effect)
        if isinstance(value, str) and value in options:
            return Effect(value)
        hint = _suggest(value, options) if isinstance(value, str) else "expected one of " + ", ".join(options)
        self.r.error(node.loc, key, f"invalid {key} {value!r}", hint)
        return None

    def _string(self, node: YMap, name: str, key: str) -> str | None:
        value = node.get(name)
        if value is None:
            return None
        if isinstance(value, YScalar) and isinstance(value.value, str) and value.value.strip():
            return value.value
        child = f"{key}.{name}" if key else name
        self.r.error(value.loc, child, f"{name} must be a non-empty string", f'quote it, e.g. {name}: "..."')
        return None

    def _risk(self, node: YMap, key: str) -> str | None:
        value = node.get("risk")
        if value is None:
            return None
        risk = value.value if isinstance(value, YScalar) else None
        if isinstance(risk, str) and risk in RISK_LEVELS:
            return risk
        hint = _suggest(risk, RISK_LEVELS) if isinstance(risk, str) else "expected one of " + ", ".join(RISK_LEVELS)
        self.r.error(value.loc, f"{key}.risk", f"invalid risk {risk!r}", hint)
        return None

    # -- rule settings

    def _section(self, node: YMap, name: str, key: str, keys: tuple[str, ...], example: str) -> YMap | None:
        value = node.get(name)
        if value is None:
            return None
        if not isinstance(value, YMap):
            self.r.error(value.loc, f"{key}.{name}", f"{name} must be a mapping", f"e.g. {name}: {example}")
            return None
        self._unknown_keys(value, f"{key}.{name}", keys)
        return value

    def _unknown_keys(self, node: YMap, key: str, allowed: tuple[str, ...]) -> None:
        for name, loc, _ in node:
            if name not in allowed:
                where = f"{key}.{name}" if key else name
                self.r.error(loc, where, f"unknown key {name!r}", _suggest(name, allowed))

    def _duration(self, section: YMap, name: str, key: str, *, required: bool) -> float | None:
        value = section.get(name)
        if value is None:
            if required:
                self.r.error(section.loc, f"{key}.{name}", f"{name} is required", "e.g. per: 1h")
            return None
        try:
            if not isinstance(value, YScalar):
                raise TimingError("expected a duration, got a collection", "e.g. 15m")
            return parse_duration(value.value)
        except TimingError as exc:
            self.r.error(value.loc, f"{key}.{name}", exc.message, exc.hint)
            return None

    def _positive_int(self, section: YMap, name: str, key: str, *, required: bool) -> int | None:
        value = section.get(name)
        if value is None:
            if required:
                self.r.error(section.loc, f"{key}.{name}", f"{name} is required", f"e.g. {name}: 10")
            return None
        number = value.value if isinstance(value, YScalar) else None
        if isinstance(number, int) and not isinstance(number, bool) and number >= 1:
            return number
        self.r.error(
            value.loc,
            f"{key}.{name}",
            f"{name} must be a whole number of at least 1, got {number!r}",
            yaml11_hint(number, "number") or f"e.g. {name}: 2",
        )
        return None

    def _path(self, section: YMap, name: str, key: str, *, params_only: bool = False) -> FieldPath | None:
        """A limit's field path: ``key`` (default agent.id) or a budget's ``sum`` (a params field)."""
        value = section.get(name)
        example = "e.g. amount or params.refund.amount" if params_only else "e.g. agent.id or params.customer_id"
        text = DEFAULT_LIMIT_KEY
        if value is not None:
            raw = value.value if isinstance(value, YScalar) else None
            if not isinstance(raw, str):
                self.r.error(value.loc, f"{key}.{name}", f"{name} must be a field path", example)
                return None
            text = raw
        path = parse_path(text)
        problem = None
        if path is None:
            problem = "it has an empty segment"
        elif params_only and path.root != "params":
            problem = f"{name} must name a params field"
        if path is None or problem:
            loc = value.loc if value is not None else section.loc
            self.r.error(loc, f"{key}.{name}", f"invalid field path {text!r}: {problem}", example)
            return None
        return path

    def _approval(self, node: YMap, key: str, effect: Effect | None) -> ApprovalSpec | None:
        section = self._section(node, "approval", key, APPROVAL_KEYS, "{timeout: 15m, quorum: 2}")
        if section is None:
            return None
        if effect is not None and effect is not Effect.REQUIRE_APPROVAL:
            self.r.error(
                node.key_loc("approval"),
                f"{key}.approval",
                f"approval only applies to require_approval rules, this rule is {effect.value}",
                "remove approval: or use require_approval: true",
            )
        k = f"{key}.approval"
        timeout = self._duration(section, "timeout", k, required=False)
        quorum = self._positive_int(section, "quorum", k, required=False)
        approvers: list[str] = []
        groups = section.get("approvers")
        if groups is not None:
            items = groups.items if isinstance(groups, YSeq) else [groups]
            for item in items:
                name = item.value if isinstance(item, YScalar) else None
                if not isinstance(name, str) or not name.strip():
                    self.r.error(
                        item.loc,
                        f"{k}.approvers",
                        "approvers must be a list of group names",
                        "e.g. approvers: [finance-leads]",
                    )
                elif name not in approvers:
                    approvers.append(name)
        remind = self._duration(section, "remind_after", k, required=False)
        escalate = self._duration(section, "escalate_after", k, required=False)
        targets = self._names_list(section, "escalate_to", k)
        if escalate is not None and not targets:
            self.r.error(
                section.key_loc("escalate_after"),
                f"{k}.escalate_after",
                "escalate_after needs escalate_to: whom to escalate to",
                "e.g. escalate_to: [finance-leads]",
            )
        if targets and escalate is None:
            self.r.error(
                section.key_loc("escalate_to"),
                f"{k}.escalate_to",
                "escalate_to needs escalate_after: when to escalate",
                "e.g. escalate_after: 30m",
            )
        if remind is not None and escalate is not None and escalate <= remind:
            self.r.warn(section.loc, k, "escalate_after is not later than remind_after; the reminder comes too late")
        return ApprovalSpec(
            timeout_seconds=timeout,
            quorum=quorum or 1,
            approvers=tuple(approvers),
            remind_after_seconds=remind,
            escalate_after_seconds=escalate,
            escalate_to=tuple(targets),
        )

    def _names_list(self, section: YMap, name: str, key: str) -> list[str]:
        """A list of group or channel names (one name alone is a list of one)."""
        node = section.get(name)
        if node is None:
            return []
        names: list[str] = []
        for item in node.items if isinstance(node, YSeq) else [node]:
            value = item.value if isinstance(item, YScalar) else None
            if not isinstance(value, str) or not value.strip():
                self.r.error(
                    item.loc, f"{key}.{name}", f"{name} must be a list of names", f"e.g. {name}: [finance-leads]"
                )
            elif value not in names:
                names.append(value)
        return names

    def _limit_allowed(self, node: YMap, name: str, key: str, effect: Effect | None) -> None:
        if effect is Effect.DENY:
            self.r.error(
                node.key_loc(name),
                f"{key}.{name}",
                f"{name} has no effect on a deny rule",
                f"remove {name}: or put it on an allow or require_approval rule",
            )

    def _rate_limit(self, node: YMap, key: str, effect: Effect | None, rule_id: str) -> RateLimitSpec | None:
        section = self._section(node, "rate_limit", key, RATE_LIMIT_KEYS, "{max: 10, per: 1m}")
        if section is None:
            return None
        self._limit_allowed(node, "rate_limit", key, effect)
        k = f"{key}.rate_limit"
        maximum = self._positive_int(section, "max", k, required=True)
        per = self._duration(section, "per", k, required=True)
        path = self._path(section, "key", k)
        if maximum is None or per is None or path is None:
            return None
        return RateLimitSpec(max=maximum, per_seconds=per, key=path.text, limit_id=f"{rule_id}:rate", key_path=path)

    def _budget(self, node: YMap, key: str, effect: Effect | None, rule_id: str) -> BudgetSpec | None:
        section = self._section(node, "budget", key, BUDGET_KEYS, "{sum: amount, max: 1000, per: 1d}")
        if section is None:
            return None
        self._limit_allowed(node, "budget", key, effect)
        k = f"{key}.budget"
        sum_path = None
        if section.get("sum") is None:
            self.r.error(
                section.loc,
                f"{k}.sum",
                "sum is required",
                "name the params field to add up, e.g. sum: amount",
            )
        else:
            sum_path = self._path(section, "sum", k, params_only=True)
        maximum = None
        max_node = section.get("max")
        if max_node is None:
            self.r.error(section.loc, f"{k}.max", "max is required", "e.g. max: 1000")
        elif isinstance(max_node, YScalar) and is_number(max_node.value) and max_node.value > 0:
            maximum = float(max_node.value)
        else:
            shown = max_node.value if isinstance(max_node, YScalar) else "a collection"
            self.r.error(max_node.loc, f"{k}.max", f"max must be a positive number, got {shown!r}", "e.g. max: 1000")
        per = self._duration(section, "per", k, required=True)
        path = self._path(section, "key", k)
        if sum_path is None or maximum is None or per is None or path is None:
            return None
        sum_field = ".".join(sum_path.segments)
        return BudgetSpec(
            sum_field=sum_field,
            max=maximum,
            per_seconds=per,
            key=path.text,
            limit_id=f"{rule_id}:budget",
            key_path=path,
            sum_path=sum_path,
        )

    def _during(self, node: YMap, key: str) -> Window | None:
        section = self._section(node, "during", key, DURING_KEYS, "{days: mon-fri, hours: 09:00-17:00}")
        if section is None:
            return None
        k = f"{key}.during"
        if section.get("days") is None and section.get("hours") is None:
            self.r.error(section.loc, k, "during needs days, hours or both", "e.g. during: {days: mon-fri}")
            return None
        days: frozenset[int] | None = frozenset(range(7))
        hours: tuple[int, int] | None = (0, 24 * 60)
        tz: ZoneInfo | None = ZoneInfo("UTC")
        tz_name = "UTC"
        for name, _, node_value in section:
            try:
                if name == "days":
                    days = parse_days(_plain(node_value))
                elif name == "hours":
                    hours = parse_hours(_plain(node_value))
                elif name == "tz":
                    tz = parse_tz(_plain(node_value))
                    tz_name = str(tz.key)
            except TimingError as exc:
                self.r.error(node_value.loc, f"{k}.{name}", exc.message, exc.hint)
                if name == "days":
                    days = None
                elif name == "hours":
                    hours = None
                else:
                    tz = None
        if days is None or hours is None or tz is None:
            return None
        return Window(days=days, start=hours[0], end=hours[1], tz=tz, tz_name=tz_name)


def _plain(node: YNode) -> Any:
    """Scalars to values, lists of scalars to lists; a mapping becomes a dict marker the parsers reject."""
    if isinstance(node, YScalar):
        return node.value
    if isinstance(node, YSeq):
        return [_plain(item) for item in node.items]
    return {}

"""`explain` (condition by condition) and `diff` (rule by rule)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from faramesh.policy import Decision, Policy, Rule
from faramesh.policy.tooling import diff_policies, explain

POLICY = Policy.from_yaml(
    """
default: deny
rules:
  - id: big
    match:
      tool: payments
      operation: [charge, refund]
      any:
        - amount_gt: 1000
        - all:
            - context.env_eq: prod
            - not: {currency_in: [EUR, USD]}
    require_approval: true
    approval: {timeout: 1h}
  - id: finance
    match: {tool: payments, agent.groups_contains: finance}
    allow: true
  - id: other
    match: {tool: other}
    deny: true
"""
)


def test_explain_shows_each_condition_and_why() -> None:
    result = explain(
        POLICY,
        tool="payments",
        operation="charge",
        params={"amount": 50, "currency": "GBP"},
        context={"env": "staging"},
        agent={"id": "a", "groups": ["finance"]},
    )
    assert result.decision.rule_id == "finance"
    big, finance = result.rules
    assert (big.rule_id, big.outcome, finance.outcome) == ("big", "false", "matched")
    lines = {c.text: (c.result, c.why) for c in big.conditions}
    assert lines["params.amount > 1000"] == (False, "50 <= 1000")
    assert lines["context.env == 'prod'"] == (False, "'staging' differs from 'prod'")
    assert lines["params.currency in ['EUR', 'USD']"] == (False, "'GBP' is not listed")
    assert lines["not"][0] is True
    assert result.other_rules == 1
    text = result.render()
    assert text.startswith("decision: allow by rule finance")
    assert "→ rule finance" in text and "✗ params.amount > 1000: 50 <= 1000" in text


def test_explain_says_why_unknown_never_matches() -> None:
    result = explain(POLICY, tool="payments", operation="charge", params={"amount": "5000"})
    assert result.decision.rule_id is None
    big = result.rules[0]
    assert big.outcome == "unknown"
    why = {c.text: c.why for c in big.conditions}
    assert why["params.amount > 1000"] == "the value '5000' is not a number, so the condition is unknown"
    assert "the field is missing" in why["context.env == 'prod'"]


def test_explain_operation_mismatch_and_no_rule() -> None:
    result = explain(POLICY, tool="payments", operation="refund_status")
    assert result.rules[0].outcome == "operation"
    assert "No rule names this tool." in explain(POLICY, tool="nothing", operation="x").render()


def test_explain_agrees_with_the_policy_on_the_decision() -> None:
    for params in ({"amount": 5}, {"amount": 5000}, {}):
        result = explain(POLICY, tool="payments", operation="charge", params=params)
        assert result.decision == POLICY.evaluate(tool="payments", operation="charge", params=params)


OLD = """
default: deny
rules:
  - id: large
    match: {tool: refund, amount_gt: 100}
    require_approval: true
    approval: {timeout: 1h}
  - id: small
    match: {tool: refund, amount_lte: 100}
    allow: true
  - match: {tool: shell}
    deny: true
"""


def test_diff_rule_by_rule() -> None:
    new = """
default: deny
rules:
  - id: small
    match: {tool: refund, amount_lte: 50}
    allow: true
  - id: large
    match: {tool: refund, amount_gt: 100}
    require_approval: true
    approval: {timeout: 2h}
    reason: Large refunds need a person
  - id: search
    match: {tool: search}
    allow: true
"""
    d = diff_policies(Policy.from_yaml(OLD), Policy.from_yaml(new))
    kinds = {(c.kind, c.rule_id) for c in d.rules}
    assert ("changed", "small") in kinds and ("changed", "large") in kinds
    assert ("added", "search") in kinds and ("removed", "rules[2]") in kinds
    assert any(c.kind == "moved" for c in d.rules)
    small = next(c for c in d.rules if c.kind == "changed" and c.rule_id == "small")
    assert "- condition params.amount <= 100" in small.details and "+ condition params.amount <= 50" in small.details
    large = next(c for c in d.rules if c.kind == "changed" and c.rule_id == "large")
    assert any(line.startswith("approval:") for line in large.details)
    assert any(line.startswith("reason:") for line in large.details)
    text = d.render()
    assert "+ rule search" in text and "- rule rules[2]" in text and "moved from position" in text


def test_reformatting_is_not_a_change() -> None:
    reformatted = OLD.replace("{tool: refund, amount_gt: 100}", "\n      tool: refund\n      amount_gt: 100.0")
    d = diff_policies(Policy.from_yaml(OLD), Policy.from_yaml("# a comment\n" + reformatted))
    assert d.empty and d.same_behaviour and "No changes." in d.render()


def test_unnamed_rules_pair_by_content_when_a_rule_is_inserted() -> None:
    new = OLD.replace("rules:\n", "rules:\n  - match: {tool: audit}\n    allow: true\n", 1)
    d = diff_policies(Policy.from_yaml(OLD), Policy.from_yaml(new))
    # the shell rule moved from rules[2] to rules[3] but is the same rule: only the insertion shows
    assert [(c.kind, c.rule_id) for c in d.rules if c.kind != "moved"] == [("added", "rules[0]")]
    assert "default" not in "".join(d.settings)
    d2 = diff_policies(Policy.from_yaml(OLD), Policy.from_yaml(OLD.replace("default: deny", "default: allow")))
    assert d2.settings == ["default: 'deny' → 'allow'"]


class _Log:
    """A recorder that writes down every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def condition(self, key: str, result: bool | None, value: object) -> None:
        self.calls.append(("condition", key, result, value))

    def rule(self, rule: Rule, outcome: str) -> None:
        self.calls.append(("rule", rule.id, outcome))

    def decided(self, decision: Decision) -> None:
        self.calls.append(("decided", decision.rule_id, decision.effect.value))


def test_evaluate_tells_a_recorder_each_rule_condition_and_the_choice() -> None:
    log = _Log()
    decision = POLICY.evaluate(
        tool="payments",
        operation="charge",
        params={"amount": 50, "currency": "GBP"},
        context={"env": "staging"},
        agent={"groups": ["finance"]},
        recorder=log,
    )
    assert decision.rule_id == "finance"
    any_key = "rules[0].match.any"
    assert log.calls == [
        ("condition", f"{any_key}[0].amount_gt", False, 50),  # every part is traced, even after the answer is known
        ("condition", f"{any_key}[1].all[0].context.env_eq", False, "staging"),
        ("condition", f"{any_key}[1].all[1].not.currency_in", False, "GBP"),
        ("condition", f"{any_key}[1].all[1].not", True, None),
        ("condition", f"{any_key}[1].all", False, None),
        ("condition", any_key, False, None),
        ("rule", "big", "false"),
        ("condition", "rules[1].match.agent.groups_contains", True, ["finance"]),
        ("rule", "finance", "matched"),
        ("decided", "finance", "allow"),
    ]
    # the same call without a recorder decides the same
    assert decision == POLICY.evaluate(
        tool="payments",
        operation="charge",
        params={"amount": 50, "currency": "GBP"},
        context={"env": "staging"},
        agent={"groups": ["finance"]},
    )


def test_recorder_sees_operation_mismatch_default_and_invalid_names() -> None:
    log = _Log()
    POLICY.evaluate(tool="payments", operation="status", agent={"groups": []}, recorder=log)
    assert log.calls == [
        ("rule", "big", "operation"),
        ("condition", "rules[1].match.agent.groups_contains", False, []),
        ("rule", "finance", "false"),
        ("decided", None, "deny"),
    ]
    log = _Log()
    POLICY.evaluate(tool=5, operation="x", recorder=log)  # type: ignore[arg-type]
    assert log.calls == [("decided", None, "deny")]


class _Exploding(Mapping[str, object]):
    def __getitem__(self, key: str) -> object:
        raise RuntimeError("broken params")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 1


def test_explain_reports_an_error_as_the_deny_evaluate_returns() -> None:
    policy = Policy.from_yaml(
        "default: allow\nrules:\n  - id: r\n    match: {tool: t, amount_gt: 1}\n    allow: true\n"
    )
    result = explain(policy, tool="t", operation="o", params=_Exploding())
    assert result.decision == policy.evaluate(tool="t", operation="o", params=_Exploding())
    assert result.decision.effect.value == "deny"
    assert [(r.rule_id, r.outcome) for r in result.rules] == [("r", "error")]

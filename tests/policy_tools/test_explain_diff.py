"""`explain` (condition by condition) and `diff` (rule by rule)."""

from __future__ import annotations

from faramesh.policy import Policy
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

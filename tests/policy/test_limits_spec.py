"""Rate limits and budgets: what the policy hands to the service, and how keys and amounts resolve."""

from __future__ import annotations

import math
from typing import Any

import pytest

from faramesh.policy import BudgetSpec, Decision, Effect, Policy, RateLimitSpec

POLICY = """
rules:
  - id: refunds
    match: {tool: refund, operation: process, amount_lte: 100}
    allow: true
    rate_limit: {max: 10, per: 1m}
    budget: {sum: amount, max: 500, per: 1d, key: context.agent_id}
  - id: payouts
    match: {tool: payout}
    require_approval: true
    approval: {timeout: 2h}
    budget: {sum: params.payout.amount, max: 1000.5, per: 1h30m, key: params.customer_id}
  - id: emails
    match: {tool: email}
    allow: true
    rate_limit: {max: 3, per: 3600, key: agent.id}
  - id: nothing
    match: {tool: other}
    allow: true
"""


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.from_yaml(POLICY)


def test_limits_are_attached_to_the_matched_rule(policy: Policy) -> None:
    d = policy.evaluate(tool="refund", operation="process", params={"amount": 20}, context={"agent_id": "bot"})
    assert d.effect is Effect.ALLOW
    rate, budget = d.limits
    assert rate == RateLimitSpec(max=10, per_seconds=60.0, key="agent.id", limit_id="refunds:rate")
    assert budget == BudgetSpec(
        sum_field="amount", max=500.0, per_seconds=86400.0, key="context.agent_id", limit_id="refunds:budget"
    )
    d = policy.evaluate(tool="payout", operation="send", params={}, context={})
    assert d.effect is Effect.REQUIRE_APPROVAL
    assert d.approval is not None and d.approval.timeout_seconds == 7200.0
    (budget,) = d.limits
    assert isinstance(budget, BudgetSpec)
    assert (budget.sum_field, budget.max, budget.per_seconds, budget.key, budget.limit_id) == (
        "payout.amount",
        1000.5,
        5400.0,
        "params.customer_id",
        "payouts:budget",
    )
    assert policy.evaluate(tool="other", operation="x", params={}, context={}).limits == ()


def test_no_limits_when_no_rule_matched(policy: Policy) -> None:
    d = policy.evaluate(tool="refund", operation="process", params={"amount": 500}, context={})
    assert d.rule_id is None and d.limits == ()


def test_limit_ids_are_stable_across_loads(policy: Policy) -> None:
    again = Policy.from_yaml(POLICY)
    assert [lim.limit_id for r in again.rules for lim in r.limits] == [
        lim.limit_id for r in policy.rules for lim in r.limits
    ]
    default_ids = Policy.from_yaml("rules:\n  - {allow: true, rate_limit: {max: 1, per: 1s}}\n")
    assert default_ids.rules[0].limits[0].limit_id == "rules[0]:rate"


@pytest.mark.parametrize(
    ("key", "params", "context", "agent", "expected"),
    [
        ("agent.id", {}, {}, {"id": "billing-bot"}, "billing-bot"),
        ("agent.id", {}, {"agent_id": "x"}, {}, None),
        ("agent.id", {}, {}, None, None),
        ("agent.id", {}, {}, {"id": ""}, None),
        ("agent.id", {}, {}, {"id": 42}, "42"),
        ("agent.id", {}, {}, {"id": True}, None),
        ("agent.id", {}, {}, {"id": 1.5}, None),
        ("agent.id", {}, {}, {"id": ["a"]}, None),
        ("agent.id", {}, {}, {"id": {"a": 1}}, None),
        ("context.agent_id", {}, {"agent_id": "billing-bot"}, {"id": "other"}, "billing-bot"),
        ("params.customer_id", {"customer_id": "c-1"}, {}, {}, "c-1"),
        ("customer_id", {"customer_id": "c-1"}, {}, {}, "c-1"),
        ("params.customer.id", {"customer": {"id": "c-2"}}, {}, {}, "c-2"),
        ("params.customer.id", {"customer": "c-2"}, {}, {}, None),
        ("params.customer_id", None, None, None, None),
    ],
)
def test_key_value(key: str, params: Any, context: Any, agent: Any, expected: str | None) -> None:
    policy = Policy.from_yaml(f"rules:\n  - {{allow: true, rate_limit: {{max: 1, per: 1s, key: '{key}'}}}}\n")
    spec = policy.rules[0].limits[0]
    assert spec.key_value(params=params, context=context, agent=agent) == expected
    assert Decision.key_value(spec, params=params, context=context, agent=agent) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"amount": 20}, 20.0),
        ({"amount": 20.5}, 20.5),
        ({"amount": 0}, 0.0),
        ({}, None),
        (None, None),
        ({"amount": None}, None),
        ({"amount": "20"}, None),
        ({"amount": True}, None),
        ({"amount": math.nan}, None),
        ({"amount": math.inf}, None),
        ({"amount": -5}, None),  # a negative amount would give budget back
        ({"amount": [20]}, None),
        ({"amount": 10**400}, None),  # too large to account for
    ],
)
def test_budget_amount_is_fail_closed(params: Any, expected: float | None) -> None:
    policy = Policy.from_yaml("rules:\n  - {allow: true, budget: {sum: amount, max: 100, per: 1d}}\n")
    spec = policy.rules[0].limits[0]
    assert isinstance(spec, BudgetSpec)
    assert spec.amount(params) == expected


def test_budget_amount_nested_path(policy: Policy) -> None:
    spec = policy.rules[1].limits[0]
    assert isinstance(spec, BudgetSpec)
    assert spec.amount({"payout": {"amount": 12.5}}) == 12.5
    assert spec.amount({"payout": 12.5}) is None


@pytest.mark.parametrize(
    ("per", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("1h30m", 5400),
        ("90", 90),
        ("0.5", 0.5),
        ("1.5m", 90),
    ],
)
def test_durations(per: str, seconds: float) -> None:
    # unquoted in YAML, so "90" is the number 90: a bare number is seconds
    policy = Policy.from_yaml(f"rules:\n  - {{allow: true, rate_limit: {{max: 1, per: {per}}}}}\n")
    assert policy.rules[0].limits[0].per_seconds == seconds


def test_limits_in_decision_to_dict(policy: Policy) -> None:
    d = policy.evaluate(tool="email", operation="send", params={}, context={})
    assert d.to_dict() == {
        "effect": "allow",
        "reason": "Matched rule emails",
        "risk": "low",
        "rule_id": "emails",
        "approval": None,
        "limits": [{"type": "rate_limit", "id": "emails:rate", "max": 3, "per_seconds": 3600.0, "key": "agent.id"}],
    }

"""`prove`: proofs, verified counter-examples, and "cannot decide" where the analysis is not exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from faramesh.policy import Effect, Policy
from faramesh.policy.tooling import ClaimError, parse_claim, prove

SEED = Path(__file__).parents[1] / "fixtures" / "seed_policy.yaml"

TIERED = """
default: deny
rules:
  - id: too-large
    match: {tool: refund, operation: process, amount_gt: 5000}
    deny: true
  - id: large
    match: {tool: refund, operation: process, amount_gt: 1000}
    require_approval: true
    approval: {timeout: 1h}
  - id: small
    match: {tool: refund, operation: process, amount_lte: 1000, currency_in: [USD, EUR]}
    allow: true
"""


def policy(text: str) -> Policy:
    return Policy.from_yaml(text)


def test_seed_policy_large_refunds_are_never_allowed() -> None:
    result = prove(Policy.from_file(SEED), "tool=refund operation=process amount>1000 => not allow")
    assert result.verdict == "proven", result.render()
    assert "proven" in result.render()


def test_counter_example_is_concrete_and_really_breaks_the_claim() -> None:
    p = Policy.from_file(SEED)
    result = prove(p, "tool=refund operation=process amount>50 => not allow")
    assert result.verdict == "counter-example"
    ex = result.counterexample
    assert ex is not None
    amount = ex.params["amount"]
    assert isinstance(amount, int | float) and 50 < amount <= 100
    # the example is what the real evaluator decides, not the analysis's belief
    d = p.evaluate(tool=ex.tool, operation=ex.operation, params=ex.params, context=ex.context, agent=ex.agent)
    assert d.effect is Effect.ALLOW and d.rule_id == "rules[1]"
    assert "counter-example" in result.render() and '"amount"' in result.render()


def test_first_match_wins_is_respected() -> None:
    # `large` would require approval for 6000, but `too-large` comes first and denies it.
    p = policy(TIERED)
    assert prove(p, "tool=refund operation=process amount>5000 => deny").proven
    assert prove(p, "tool=refund amount>1000 => not allow").proven
    result = prove(p, "tool=refund operation=process amount>1000 => deny")
    assert result.verdict == "counter-example"
    assert result.counterexample is not None
    assert 1000 < result.counterexample.params["amount"] <= 5000


def test_boundaries_are_exact() -> None:
    p = policy(TIERED)
    # 1000 itself is small; a float just above it is large
    result = prove(p, "tool=refund operation=process amount>=1000 currency=USD => not allow")
    assert result.verdict == "counter-example"
    assert result.counterexample is not None and result.counterexample.params["amount"] == 1000
    assert prove(p, "tool=refund operation=process amount>1000 currency=USD => not allow").proven


def test_missing_or_wrong_kind_data_is_part_of_the_space() -> None:
    # Without the currency condition satisfied the small rule never matches, so the default denies.
    p = policy(TIERED)
    assert prove(p, "tool=refund currency=GBP => not allow").proven
    assert prove(p, "tool=refund currency=null => not allow").proven
    # But with no premise on currency an allow exists, and the example carries a listed currency.
    result = prove(p, "tool=refund operation=process => not allow")
    assert result.counterexample is not None
    assert result.counterexample.params["currency"] in ("USD", "EUR")


def test_not_in_deny_rules_miss_values_of_another_kind() -> None:
    # A deny rule with not_in does not match a number, so a numeric currency reaches the allow rule.
    p = policy(
        """
rules:
  - match: {tool: pay, currency_not_in: [USD, EUR]}
    deny: true
  - match: {tool: pay}
    allow: true
"""
    )
    result = prove(p, "tool=pay currency!=USD currency!=EUR => not allow")
    assert result.verdict == "counter-example"
    assert result.counterexample is not None
    assert not isinstance(result.counterexample.params.get("currency"), str)


def test_globs_and_unmentioned_tools() -> None:
    p = policy(
        """
default: deny
rules:
  - match: {tool: "stripe.*", operation: refund}
    require_approval: true
    approval: {timeout: 1h}
  - match: {tool: "*.read"}
    allow: true
"""
    )
    assert prove(p, "tool=stripe.* operation=refund => require_approval").proven
    result = prove(p, "tool=stripe.* => not allow")
    assert result.verdict == "counter-example"
    assert result.counterexample is not None
    assert result.counterexample.tool.startswith("stripe.") and result.counterexample.tool.endswith(".read")
    # a tool no rule names gets the default
    assert prove(p, "tool=github.issues => deny").proven
    assert prove(p, "=> not allow").verdict == "counter-example"


def test_nested_combinators() -> None:
    p = policy(
        """
rules:
  - match:
      tool: payments
      any:
        - amount_gt: 1000
        - all:
            - context.env_eq: prod
            - not: {currency_in: [EUR, USD]}
    deny: true
  - match: {tool: payments}
    allow: true
"""
    )
    assert prove(p, "tool=payments context.env=prod currency=GBP => deny").proven
    assert prove(p, "tool=payments amount>1000 => deny").proven
    result = prove(p, "tool=payments context.env=prod => deny")
    assert result.verdict == "counter-example"
    assert result.counterexample is not None
    # allowed: env prod but the currency is EUR/USD or not a string, and the amount is not above 1000
    assert result.counterexample.decision.effect is Effect.ALLOW


def test_agent_fields_have_the_servers_shape() -> None:
    p = policy(
        """
rules:
  - match: {tool: deploy, agent.groups_contains: release}
    allow: true
  - match: {tool: deploy, agent.role_eq: admin}
    require_approval: true
    approval: {timeout: 1h}
"""
    )
    result = prove(p, "tool=deploy => not allow")
    assert result.counterexample is not None and result.counterexample.agent["groups"] == ["release"]
    # groups is a list of strings: it can never equal a string, so this premise is empty
    assert prove(p, "tool=deploy agent.groups=release => allow").vacuous
    # roles are only agent, approver and admin
    assert prove(p, "tool=deploy agent.role=superuser => allow").vacuous
    result = prove(p, "tool=deploy agent.role=admin => require_approval")
    assert result.counterexample is not None and "release" in result.counterexample.agent["groups"]
    assert prove(p, "tool=deploy agent.role=agent => not require_approval").proven


def test_time_windows_give_a_time_in_the_counter_example() -> None:
    p = policy(
        """
rules:
  - match: {tool: deploy}
    during: {days: mon-fri, hours: "09:00-17:00", tz: Europe/Berlin}
    allow: true
"""
    )
    result = prove(p, "tool=deploy => deny")
    assert result.verdict == "counter-example"
    assert result.counterexample is not None and result.counterexample.uses_time
    assert "time:" in result.render()
    d = p.evaluate(tool="deploy", operation="x", now=result.counterexample.now)
    assert d.effect is Effect.ALLOW


def test_regex_counter_examples_are_found_and_checked() -> None:
    p = policy(
        r"""
rules:
  - match: {tool: shell, command_matches: 'rm .*'}
    deny: true
  - match: {tool: shell, command_matches: 'ls( -[a-z]+)*( [\w./-]+)*'}
    allow: true
"""
    )
    result = prove(p, "tool=shell => deny")
    assert result.verdict == "counter-example"
    assert result.counterexample is not None and result.counterexample.params["command"].startswith("ls")
    assert prove(p, 'tool=shell command="rm -rf /" => deny').proven


def test_cannot_decide_when_a_regular_expression_defeats_the_search() -> None:
    p = policy(
        r"""
rules:
  - match: {tool: shell, command_matches: '(?=x)y'}
    allow: true
"""
    )
    result = prove(p, "tool=shell => deny")
    assert result.verdict == "cannot decide"
    assert not result.proven
    assert any("regular expression" in r for r in result.reasons)


def test_cannot_decide_when_a_limit_could_deny() -> None:
    p = policy(
        """
rules:
  - match: {tool: search}
    allow: true
    rate_limit: {max: 10, per: 1m}
"""
    )
    result = prove(p, "tool=search => allow")
    assert result.verdict == "cannot decide"
    assert any("rate limit" in r for r in result.reasons)
    # denials are fine: a limit only ever turns a decision into a deny
    assert prove(p, "tool=search => allow or deny").proven


def test_contradictory_premise_is_vacuously_proven() -> None:
    result = prove(policy(TIERED), "amount>5 amount<3 => allow")
    assert result.proven and result.vacuous


def test_budget_exhaustion_says_cannot_decide() -> None:
    result = prove(policy(TIERED), "=> not allow", budget=3)
    assert result.verdict == "cannot decide"
    assert any("steps" in r for r in result.reasons)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("tool=refund amount>1000", "=>"),
        ("tool=refund => maybe", "unknown effect"),
        ("tool>refund => deny", "tool takes ="),
        ("amount>big => deny", "needs a number"),
        ("tool=refund tool=charge => deny", "twice"),
        ("tool=ref und => deny", "cannot read"),
        ("=> not allow or deny", "one effect after not"),
    ],
)
def test_claim_errors_say_what_to_write(text: str, problem: str) -> None:
    with pytest.raises(ClaimError) as exc:
        parse_claim(text)
    assert problem in str(exc.value)


def test_claim_values_keep_their_kind() -> None:
    claim = parse_claim('tier="5" n=5 x=5.5 flag=true name=gold context.env!=prod, and amount<=3 => deny or allow')
    ops = {(a.path.text, a.op, a.operand) for a, _ in claim.lits}
    assert ("params.tier", "eq", "5") in ops
    assert ("params.n", "eq", 5) in ops
    assert ("params.x", "eq", 5.5) in ops
    assert ("params.flag", "eq", True) in ops
    assert ("params.name", "eq", "gold") in ops
    assert ("context.env", "eq", "prod") in ops
    assert ("params.amount", "lte", 3) in ops
    [(atom, allowed)] = parse_claim("agent.groups~finance => deny").lits
    assert (atom.path.text, atom.op, atom.operand, allowed) == ("agent.groups", "contains", "finance", {True})
    [(atom, allowed)] = parse_claim("tags!~5 => deny").lits
    assert (atom.op, atom.operand, allowed) == ("contains", 5, {False, None})
    assert claim.effects == {Effect.DENY, Effect.ALLOW}

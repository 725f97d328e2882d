"""Properties: the tools' reading of a policy agrees with the compiled evaluator, and `prove` is sound.

Random small policies use every operator, `any`, `all` and `not`, globs and
defaults; the inputs cover every kind of value and numbers on and around the
policies' constants.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faramesh.policy import Policy
from faramesh.policy.names import NameMatcher
from faramesh.policy.tooling import explain, parse_claim, prove
from faramesh.policy.tooling.model import Inputs, and3, build_model, rule_outcome, truth

from .strategies import build, claims, inputs, policies, values


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), st.sampled_from(("t1", "t2", "t3", "tx")), st.sampled_from(("o1", "o2")), st.data())
def test_rule_outcomes_match_policy_explain(text: str, tool: str, op: str, data: st.DataObject) -> None:
    policy = Policy.from_yaml(text)
    model = build_model(policy)
    a = data.draw(st.sampled_from(values()))
    b = data.draw(st.sampled_from(values()))
    env = data.draw(st.sampled_from(values()))
    action = build(tool, op, a, b, env)
    explained = policy.explain(**action)
    inputs_ = Inputs.of(**action)
    for step in explained.trace:
        rule = next(r for r in model.rules if r.id == step.rule_id)
        assert rule_outcome(rule, inputs_) == step.outcome, (text, action, step)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), claims())
def test_prove_is_exact_on_policies_it_models(text: str, claim_text: str) -> None:
    policy = Policy.from_yaml(text)
    claim = parse_claim(claim_text)
    result = prove(policy, claim)
    # No regular expressions, windows or limits here: every case is settled exactly.
    assert result.verdict in ("proven", "counter-example"), result.render()
    if result.verdict == "counter-example":
        ex = result.counterexample
        assert ex is not None
        assert claim.holds_premise(ex)
        decision = policy.evaluate(
            tool=ex.tool, operation=ex.operation, params=ex.params, context=ex.context, agent=ex.agent, now=ex.now
        )
        assert decision.effect not in claim.effects
        return
    # Proven: no input of the sample that satisfies the premise breaks the claim.
    for combo in inputs():
        action = build(*combo)
        probe = Inputs.of(**action)
        if claim.tool is not None and not NameMatcher(list(claim.tool))(probe.tool):
            continue
        if not all(truth(atom, probe.value(atom.path)) in allowed for atom, allowed in claim.lits):
            continue
        decision = policy.evaluate(**action)
        assert decision.effect in claim.effects, (text, claim_text, action, decision)


def _check(policy: Policy, claim_text: str, actions: list[dict[str, Any]]) -> None:
    claim = parse_claim(claim_text)
    result = prove(policy, claim)
    assert result.verdict in ("proven", "counter-example"), (claim_text, result.render())
    violated = None
    for action in actions:
        probe = Inputs.of(**action)
        premise = all(truth(atom, probe.value(atom.path)) in allowed for atom, allowed in claim.lits)
        if premise and policy.evaluate(**action).effect not in claim.effects:
            violated = action
            break
    if result.verdict == "proven":
        assert violated is None, (policy.source_text, claim_text, violated)
    else:
        assert result.counterexample is not None and claim.holds_premise(result.counterexample)


CONDITIONS = [
    *(f"a_{op}: {n}" for op in ("gt", "gte", "lt", "lte", "eq", "ne") for n in (5, 5.5)),
    *(f"a_{op}: [5, prod, true]" for op in ("in", "not_in")),
    *(f"a_{op}: prod" for op in ("eq", "ne", "startswith", "endswith", "contains")),
    "a_contains: 5",
    "a_exists: true",
    "a_exists: false",
]
PREMISES = [f"a{op}{v}" for op in (">", ">=", "<", "<=") for v in ("5", "5.5")] + [
    f"a{op}{v}" for op in ("=", "!=") for v in ("5", "prod", "true", "null")
]


def test_every_single_condition_against_every_premise() -> None:
    """Exhaustive over one condition and one premise test: boundaries, kinds and negation all meet here."""
    actions = [build("t1", "o1", a, None) for a in values()]
    for condition in CONDITIONS:
        for negate in (False, True):
            match = f"{{not: {{{condition}}}}}" if negate else f"{{{condition}}}"
            policy = Policy.from_yaml(f"default: deny\nrules:\n  - match: {match}\n    allow: true\n")
            for premise in PREMISES:
                _check(policy, f"{premise} => deny", actions)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), st.sampled_from(("t1", "t2", "t3", "tx")), st.sampled_from(("o1", "o2")), st.data())
def test_explain_chooses_the_rule_evaluate_chooses(text: str, tool: str, op: str, data: st.DataObject) -> None:
    """`explain` is `evaluate` with a recorder: its decision, its matched rule and its conditions agree."""
    policy = Policy.from_yaml(text)
    action = build(
        tool,
        op,
        data.draw(st.sampled_from(values())),
        data.draw(st.sampled_from(values())),
        data.draw(st.sampled_from(values())),
    )
    decision = policy.evaluate(**action)
    explained = explain(policy, **action)
    assert explained.decision == decision
    matched = [r for r in explained.rules if r.outcome == "matched"]
    if decision.rule_id is None:
        assert matched == [], (text, action)
    else:
        # the decisive rule is the last one tried, and the only one that matched
        assert [r.rule_id for r in matched] == [decision.rule_id] == [explained.rules[-1].rule_id], (text, action)
        assert matched[0].effect == decision.effect.value
    for rule in explained.rules:
        if rule.outcome in ("false", "unknown", "matched"):  # the conditions shown are the ones that decided
            shown = [c.result for c in rule.conditions if c.depth == 0]
            want = True if rule.outcome == "matched" else (False if rule.outcome == "false" else None)
            assert and3(shown) is want, (text, action, rule)

"""Evaluation: the seed policy, every operator, names, combinators and fail-closed behaviour."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from faramesh.policy import ApprovalSpec, Decision, Effect, Policy, load_starter_policy
from tests.policy.seed import SEED_POLICY


def load(text: str) -> Policy:
    return Policy.from_yaml(textwrap.dedent(text))


def refund(policy: Policy, params: Mapping[str, Any] | None) -> Decision:
    return policy.evaluate(tool="refund", operation="process", params=params, context={"agent_id": "billing-bot"})


@pytest.fixture(scope="module")
def seed() -> Policy:
    return Policy.from_yaml(SEED_POLICY)


# -- the seed document's policy ---------------------------------------------------------------------------


def test_seed_small_refund_is_allowed(seed: Policy) -> None:
    d = refund(seed, {"amount": 50, "customer_id": "c1"})
    assert d == Decision(Effect.ALLOW, "Small refunds allowed", "low", "rules[1]")


def test_seed_large_refund_requires_approval(seed: Policy) -> None:
    d = refund(seed, {"amount": 150, "customer_id": "c1"})
    assert d.effect is Effect.REQUIRE_APPROVAL
    assert (d.reason, d.risk, d.rule_id) == ("Large refunds need approval", "high", "rules[0]")
    assert d.approval == ApprovalSpec(timeout_seconds=None, quorum=1, approvers=())
    assert d.limits == ()


def test_seed_boundary_100_is_allowed(seed: Policy) -> None:
    assert refund(seed, {"amount": 100}).effect is Effect.ALLOW
    assert refund(seed, {"amount": 100.0}).effect is Effect.ALLOW
    assert refund(seed, {"amount": 100.01}).effect is Effect.REQUIRE_APPROVAL


def test_seed_design_example_values(seed: Policy) -> None:
    d = seed.evaluate(tool="refund", operation="process", params={"amount": 150}, context={})
    assert (d.effect.value, d.reason, d.risk, d.rule_id) == (
        "require_approval",
        "Large refunds need approval",
        "high",
        "rules[0]",
    )


@pytest.mark.parametrize(
    "params",
    [
        {},
        None,
        {"amount": None},
        {"amount": "150"},
        {"amount": "50"},
        {"amount": True},
        {"amount": False},
        {"amount": math.nan},
        {"amount": math.inf},
        {"amount": -math.inf},
        {"amount": [150]},
        {"amount": {"value": 150}},
        {"amount": b"150"},
        {"Amount": 50},
    ],
    ids=repr,
)
def test_seed_missing_or_non_numeric_amount_falls_to_default_deny(seed: Policy, params: Any) -> None:
    d = refund(seed, params)
    assert d == Decision(Effect.DENY, "No rule matched; default is deny", "medium", None)


def test_seed_other_tool_or_operation_is_denied_by_default(seed: Policy) -> None:
    for tool, op in [("refund", "cancel"), ("refunds", "process"), ("user_management", "delete")]:
        d = seed.evaluate(tool=tool, operation=op, params={"amount": 5}, context={})
        assert d.effect is Effect.DENY and d.rule_id is None


def test_large_integers_compare_exactly(seed: Policy) -> None:
    assert refund(seed, {"amount": 10**30}).effect is Effect.REQUIRE_APPROVAL
    assert refund(seed, {"amount": -(10**30)}).effect is Effect.ALLOW


# -- defaults -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("default", "reason"),
    [
        ("allow", "No rule matched; default is allow"),
        ("require_approval", "No rule matched; default is require_approval"),
        ("deny", "No rule matched; default is deny"),
    ],
)
def test_default_decision(default: str, reason: str) -> None:
    policy = load(f"default: {default}\nrules: []\n")
    d = policy.evaluate(tool="anything", operation="x", params={}, context={})
    assert (d.effect.value, d.reason, d.risk, d.rule_id) == (default, reason, "medium", None)
    assert (d.approval is not None) == (default == "require_approval")


def test_rule_defaults_for_id_reason_and_risk() -> None:
    policy = load(
        """
        rules:
          - match: {tool: a}
            allow: true
          - match: {tool: b}
            require_approval: true
          - match: {tool: c}
            deny: true
        """
    )
    got = [policy.evaluate(tool=t, operation="x", params={}, context={}) for t in "abc"]
    assert [(d.rule_id, d.reason, d.risk) for d in got] == [
        ("rules[0]", "Matched rule rules[0]", "low"),
        ("rules[1]", "Matched rule rules[1]", "medium"),
        ("rules[2]", "Matched rule rules[2]", "high"),
    ]


def test_first_matching_rule_wins() -> None:
    policy = load(
        """
        default: allow
        rules:
          - id: first
            match: {tool: "db.*"}
            deny: true
          - id: second
            match: {tool: db.query}
            allow: true
        """
    )
    assert policy.evaluate(tool="db.query", operation="run", params={}, context={}).rule_id == "first"


def test_rule_without_match_matches_everything() -> None:
    policy = load("default: allow\nrules:\n  - deny: true\n    reason: lockdown\n")
    d = policy.evaluate(tool="anything", operation="at-all", params=None, context=None)
    assert (d.effect, d.reason) == (Effect.DENY, "lockdown")


def test_empty_match_map_matches_everything() -> None:
    policy = load("rules:\n  - match: {}\n    allow: true\n")
    assert policy.evaluate(tool="x", operation="y", params={}, context={}).effect is Effect.ALLOW


def test_require_approval_carries_approval_spec() -> None:
    policy = load(
        """
        rules:
          - match: {tool: payout}
            require_approval: true
            approval: {timeout: 15m, quorum: 2, approvers: [finance-leads, cfo]}
        """
    )
    d = policy.evaluate(tool="payout", operation="send", params={}, context={})
    assert d.approval == ApprovalSpec(timeout_seconds=900.0, quorum=2, approvers=("finance-leads", "cfo"))


# -- tool and operation names --------------------------------------------------------------------------------

NAMES = """
rules:
  - id: deny-delete
    match: {tool: user_management, operation: delete}
    deny: true
  - id: stripe
    match: {tool: "stripe.*", op: "refund?"}
    allow: true
  - id: listed
    match: {tool: [alpha, beta], operation: [read, "list*"]}
    allow: true
  - id: any-tool-ping
    match: {operation: ping}
    allow: true
"""


@pytest.fixture(scope="module")
def names() -> Policy:
    return load(NAMES)


@pytest.mark.parametrize(
    ("tool", "operation", "rule_id"),
    [
        ("user_management", "delete", "deny-delete"),
        ("USER_MANAGEMENT", "DELETE", "deny-delete"),
        ("User_Management", "Delete", "deny-delete"),
        ("ｕｓｅｒ＿ｍａｎａｇｅｍｅｎｔ", "ｄｅｌｅｔｅ", "deny-delete"),  # full-width forms
        ("ＵＳＥＲ_management", "dElEtE", "deny-delete"),
        ("stripe.charges", "refunds", "stripe"),
        ("STRIPE.charges", "REFUNDS", "stripe"),
        ("stripe.", "refund1", "stripe"),
        ("stripe.charges", "refund", None),  # ? needs exactly one character
        ("stripe.charges", "refunds!", None),
        ("stripes", "refunds", None),
        ("alpha", "read", "listed"),
        ("beta", "list_all", "listed"),
        ("Beta", "LIST", "listed"),
        ("gamma", "read", None),
        ("alpha", "write", None),
        ("anything", "ping", "any-tool-ping"),
        ("user_management", "ping", "any-tool-ping"),
        (" user_management", "delete", None),  # whitespace is not stripped
        ("user_management ", "delete", None),
        ("user_management\n", "delete", None),
        ("user-management", "delete", None),
    ],
)
def test_name_matching(names: Policy, tool: str, operation: str, rule_id: str | None) -> None:
    assert names.evaluate(tool=tool, operation=operation, params={}, context={}).rule_id == rule_id


def test_unicode_variants_of_a_denied_tool_are_denied() -> None:
    policy = load("default: allow\nrules:\n  - match: {tool: [shell, kill]}\n    deny: true\n")
    # LATIN SMALL LETTER LONG S and KELVIN SIGN fold to s and k
    for variant in ("shell", "SHELL", "\u017fhell", "ｓｈｅｌｌ", "Shell", "\u212aill", "KILL"):
        assert policy.evaluate(tool=variant, operation="run", params={}, context={}).effect is Effect.DENY
    assert policy.evaluate(tool="shel", operation="run", params={}, context={}).effect is Effect.ALLOW


@pytest.mark.parametrize("bad", [None, 5, b"refund", ["refund"]])
def test_non_string_names_are_denied_even_with_default_allow(bad: Any) -> None:
    policy = load("default: allow\nrules: []\n")
    d = policy.evaluate(tool=bad, operation="process", params={}, context={})
    assert d.effect is Effect.DENY and d.rule_id is None
    d = policy.evaluate(tool="refund", operation=bad, params={}, context={})
    assert d.effect is Effect.DENY


# -- operators ---------------------------------------------------------------------------------------------

# (condition, value of params.v, expected three-valued result) where None means "unknown"
OPERATOR_CASES: list[tuple[str, Any, bool | None]] = [
    ("v_gt: 10", 11, True),
    ("v_gt: 10", 10, False),
    ("v_gt: 10", 10.5, True),
    ("v_gt: 10", "11", None),
    ("v_gt: 10", True, None),
    ("v_gt: 10", math.nan, None),
    ("v_gt: 10", math.inf, None),
    ("v_gt: 10", None, None),
    ("v_gte: 10", 10, True),
    ("v_gte: 10", 9.99, False),
    ("v_lt: 0.5", 0.25, True),
    ("v_lt: 0.5", 0.5, False),
    ("v_lte: -3", -3, True),
    ("v_lte: -3", -2, False),
    ("v_lte: -3", False, None),
    ("v_eq: gold", "gold", True),
    ("v_eq: gold", "Gold", False),
    ("v_eq: gold", 5, None),
    ("v_eq: 1", 1, True),
    ("v_eq: 1", 1.0, True),
    ("v_eq: 1", True, None),
    ("v_eq: 1", "1", None),
    ("v_eq: true", True, True),
    ("v_eq: true", False, False),
    ("v_eq: true", 1, None),
    ("v_eq: 2.5", 2.5, True),
    ("v_eq: 2.5", math.nan, None),
    ("v_ne: gold", "silver", True),
    ("v_ne: gold", "gold", False),
    ("v_ne: gold", 7, None),
    ("v_ne: 5", None, None),
    ("v_ne: 0", False, None),
    ("v_in: [a, b, 3]", "a", True),
    ("v_in: [a, b, 3]", "c", False),
    ("v_in: [a, b, 3]", 3, True),
    ("v_in: [a, b, 3]", 3.0, True),
    ("v_in: [a, b, 3]", 4, False),
    ("v_in: [a, b]", 3, None),
    ("v_in: [1, 2]", True, None),
    ("v_in: [true]", True, True),
    ("v_in: [true]", 1, None),
    ("v_in: [a, b]", ["a"], None),
    ("v_not_in: [a, b]", "c", True),
    ("v_not_in: [a, b]", "a", False),
    ("v_not_in: [a, b]", 1, None),
    ("v_not_in: [a, b]", None, None),
    ("v_contains: adm", "badminton", True),
    ("v_contains: adm", "user", False),
    ("v_contains: adm", ["adm"], True),
    ("v_contains: adm", ["admin"], False),
    ("v_contains: adm", 5, None),
    ("v_contains: 3", [1, 2, 3], True),
    ("v_contains: 3", [1, 2, 3.0], True),
    ("v_contains: 1", [True], False),
    ("v_contains: 3", "123", None),
    ("v_contains: adm", {"adm": 1}, None),
    ("v_startswith: prod-", "prod-eu", True),
    ("v_startswith: prod-", "dev-eu", False),
    ("v_startswith: prod-", 5, None),
    ("v_endswith: .csv", "a.csv", True),
    ("v_endswith: .csv", "a.csv.exe", False),
    ("v_endswith: .csv", ["a.csv"], None),
    ("v_matches: '[a-z]+'", "abc", True),
    ("v_matches: '[a-z]+'", "abc1", False),  # anchored at both ends
    ("v_matches: '[a-z]+'", "1abc", False),
    ("v_matches: '[a-z]+'", 5, None),
    ("v_exists: true", 0, True),
    ("v_exists: true", "", True),
    ("v_exists: true", None, False),
    ("v_exists: false", None, True),
    ("v_exists: false", False, False),
]


def explain_outcome(policy: Policy, params: Any) -> str:
    return policy.explain(tool="t", operation="o", params=params, context={}).trace[0].outcome


@pytest.mark.parametrize(("condition", "value", "expected"), OPERATOR_CASES, ids=repr)
def test_operator(condition: str, value: Any, expected: bool | None) -> None:
    policy = load(f"rules:\n  - match: {{{condition}}}\n    allow: true\n")
    params = {} if value is None else {"v": value}
    outcome = explain_outcome(policy, params)
    assert outcome == {True: "matched", False: "false", None: "unknown"}[expected]
    effect = policy.evaluate(tool="t", operation="o", params=params, context={}).effect
    assert effect is (Effect.ALLOW if expected is True else Effect.DENY)


@pytest.mark.parametrize(("condition", "value", "expected"), OPERATOR_CASES, ids=repr)
def test_not_of_operator_is_three_valued(condition: str, value: Any, expected: bool | None) -> None:
    policy = load(f"rules:\n  - match: {{not: {{{condition}}}}}\n    allow: true\n")
    params = {} if value is None else {"v": value}
    want = {True: "false", False: "matched", None: "unknown"}[expected]
    assert explain_outcome(policy, params) == want


def test_exists_with_missing_parent_is_a_definite_false() -> None:
    policy = load("rules:\n  - match: {customer.tier_exists: false}\n    allow: true\n")
    for params in ({}, {"customer": None}, {"customer": "gold"}, {"customer": {}}):
        assert explain_outcome(policy, params) == "matched"
    assert explain_outcome(policy, {"customer": {"tier": "gold"}}) == "false"


# -- field paths -----------------------------------------------------------------------------------------------


def test_field_paths_reach_params_context_and_agent() -> None:
    policy = load(
        """
        rules:
          - match:
              params.customer.tier_eq: gold
              customer.region_eq: eu
              context.env_eq: prod
              agent.id_in: [billing-bot, ops-bot]
              agent.groups_contains: finance
              items.0.sku_startswith: "SKU-"
            allow: true
        """
    )
    params = {"customer": {"tier": "gold", "region": "eu"}, "items": [{"sku": "SKU-1"}]}
    context = {"env": "prod"}
    agent = {"id": "billing-bot", "groups": ["finance", "ops"]}
    ok = policy.evaluate(tool="t", operation="o", params=params, context=context, agent=agent)
    assert ok.effect is Effect.ALLOW
    cases: list[tuple[dict[str, Any], Effect]] = [
        ({"params": {**params, "customer": {"tier": "gold"}}}, Effect.DENY),
        ({"params": {**params, "items": []}}, Effect.DENY),
        ({"params": {**params, "items": {"0": {"sku": "SKU-1"}}}}, Effect.ALLOW),  # a key "0" is the same path
        ({"context": {"env": "dev"}}, Effect.DENY),
        ({"context": None}, Effect.DENY),
        ({"agent": {"id": "other", "groups": ["finance"]}}, Effect.DENY),
        ({"agent": None}, Effect.DENY),
        ({"agent": {"id": "billing-bot", "groups": "finance-team"}}, Effect.ALLOW),  # substring of a string
        ({"agent": {"id": "billing-bot", "groups": ["finance-team"]}}, Effect.DENY),  # list membership
    ]
    for changed, expected in cases:
        args: dict[str, Any] = {"params": params, "context": context, "agent": agent, **changed}
        assert policy.evaluate(tool="t", operation="o", **args).effect is expected, changed


def test_context_agent_id_as_in_the_seed_example() -> None:
    policy = load("rules:\n  - match: {tool: refund, context.agent_id_eq: billing-bot}\n    allow: true\n")
    d = policy.evaluate(tool="refund", operation="process", params={}, context={"agent_id": "billing-bot"})
    assert d.effect is Effect.ALLOW
    d = policy.evaluate(tool="refund", operation="process", params={}, context={"agent_id": "admin-bot"})
    assert d.effect is Effect.DENY


@pytest.mark.parametrize("params", [[1, 2], "amount=5", 42, object()], ids=lambda p: type(p).__name__)
def test_params_that_are_not_mappings_never_match(params: Any) -> None:
    policy = load("default: allow\nrules:\n  - match: {amount_lt: 10}\n    deny: true\n")
    # the deny rule cannot be decided either way, so the default applies; nothing raises
    d = policy.evaluate(tool="t", operation="o", params=params, context=params)
    assert d.rule_id is None


# -- combinators -------------------------------------------------------------------------------------------------

COMBO = """
rules:
  - id: combo
    match:
      tool: payments
      any:
        - amount_gt: 1000
        - all:
            - context.env_eq: prod
            - not: {currency_in: [EUR, USD]}
    deny: true
  - id: rest
    match: {tool: payments}
    allow: true
"""


@pytest.mark.parametrize(
    ("params", "context", "rule_id"),
    [
        ({"amount": 5000}, {}, "combo"),
        ({"amount": 10, "currency": "GBP"}, {"env": "prod"}, "combo"),
        ({"amount": 10, "currency": "EUR"}, {"env": "prod"}, "rest"),
        ({"amount": 10, "currency": "GBP"}, {"env": "dev"}, "rest"),
        # amount and currency missing: any() is unknown, the deny rule does not match, `rest` does
        ({}, {"env": "prod"}, "rest"),
        ({"amount": 5000, "currency": 1}, {}, "combo"),  # any: one true part is enough
    ],
)
def test_combinators(params: dict[str, Any], context: dict[str, Any], rule_id: str) -> None:
    policy = load(COMBO)
    assert policy.evaluate(tool="payments", operation="pay", params=params, context=context).rule_id == rule_id


def test_three_valued_any_all_not() -> None:
    policy = load(
        """
        rules:
          - id: r
            match:
              not:
                any:
                  - a_gt: 1
                  - b_eq: x
            allow: true
        """
    )
    # a missing, b != x: any is unknown (not false), so not(any) is unknown and the rule does not match
    assert explain_outcome(policy, {"b": "y"}) == "unknown"
    assert explain_outcome(policy, {"a": 0, "b": "y"}) == "matched"
    assert explain_outcome(policy, {"a": "2", "b": "x"}) == "false"  # one true part decides any
    policy = load("rules:\n  - match: {all: [{a_gt: 1}, {b_eq: x}]}\n    allow: true\n")
    assert explain_outcome(policy, {"a": "2", "b": "y"}) == "false"  # one false part decides all
    assert explain_outcome(policy, {"a": "2", "b": "x"}) == "unknown"
    assert explain_outcome(policy, {"a": 2, "b": "x"}) == "matched"


def test_double_not_of_missing_data_does_not_match() -> None:
    policy = load("rules:\n  - match: {not: {not: {amount_gt: 100}}}\n    allow: true\n")
    assert policy.evaluate(tool="t", operation="o", params={}, context={}).effect is Effect.DENY
    assert policy.evaluate(tool="t", operation="o", params={"amount": 101}, context={}).effect is Effect.ALLOW


def test_missing_field_with_ne_never_allows() -> None:
    policy = load("rules:\n  - match: {amount_ne: 5}\n    allow: true\n")
    assert policy.evaluate(tool="t", operation="o", params={}, context={}).effect is Effect.DENY
    assert policy.evaluate(tool="t", operation="o", params={"amount": 6}, context={}).effect is Effect.ALLOW


def test_names_inside_combinators() -> None:
    policy = load(
        """
        rules:
          - match:
              any:
                - {tool: "git.*", operation: [status, log]}
                - {tool: ls}
            allow: true
        """
    )
    allowed = [("git.repo", "status"), ("GIT.x", "LOG"), ("ls", "anything")]
    denied = [("git.repo", "push"), ("lsx", "run")]
    for tool, op in allowed:
        assert policy.evaluate(tool=tool, operation=op, params={}, context={}).effect is Effect.ALLOW
    for tool, op in denied:
        assert policy.evaluate(tool=tool, operation=op, params={}, context={}).effect is Effect.DENY


# -- regex allow-lists ---------------------------------------------------------------------------------------


def test_regex_allow_list_is_anchored() -> None:
    policy = load(
        r"""
        rules:
          - match:
              tool: shell
              command_matches: 'ls( -[a-z]+)*( [\w./-]+)*'
            allow: true
        """
    )

    def run(cmd: Any) -> Effect:
        return policy.evaluate(tool="shell", operation="run", params={"command": cmd}, context={}).effect

    assert run("ls") is Effect.ALLOW
    assert run("ls -la /tmp") is Effect.ALLOW
    assert run("ls; rm -rf /") is Effect.DENY
    assert run("ls /tmp && rm -rf /") is Effect.DENY
    assert run("ls /tmp\nrm -rf /") is Effect.DENY
    assert run("rm -rf / ls") is Effect.DENY
    assert run(["ls"]) is Effect.DENY


# -- fail closed on unexpected errors ----------------------------------------------------------------------------


class ExplodingMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        return iter(["amount"])

    def __len__(self) -> int:
        return 1


def test_an_exception_inside_evaluation_denies_even_with_default_allow() -> None:
    policy = load("default: allow\nrules:\n  - match: {amount_gt: 100}\n    deny: true\n")
    d = policy.evaluate(tool="t", operation="o", params=ExplodingMapping(), context={})
    assert d.effect is Effect.DENY
    assert d.rule_id is None
    assert "RuntimeError" in d.reason


class UnhashableName(str):
    def __hash__(self) -> int:
        raise RuntimeError("no hash")


def test_a_name_that_breaks_normalisation_is_denied() -> None:
    policy = load("default: allow\nrules: []\n")
    d = policy.evaluate(tool=UnhashableName("refund"), operation="process", params={}, context={})
    assert d.effect is Effect.DENY and "RuntimeError" in d.reason


# -- the index --------------------------------------------------------------------------------------------------


def test_only_rules_for_the_tool_and_glob_rules_are_candidates() -> None:
    lines = ["rules:"]
    for i in range(1000):
        lines += [f"  - id: r{i}", f"    match: {{tool: tool{i}, amount_lt: 10}}", "    allow: true"]
    lines += ["  - id: any-tool", "    match: {tool: '*', operation: audit}", "    allow: true"]
    policy = Policy.from_yaml("\n".join(lines))
    trace = policy.explain(tool="tool999", operation="x", params={"amount": 5}, context={}).trace
    assert [t.rule_id for t in trace] == ["r999"]
    trace = policy.explain(tool="tool5", operation="audit", params={}, context={}).trace
    assert [(t.rule_id, t.outcome) for t in trace] == [("r5", "unknown"), ("any-tool", "matched")]
    trace = policy.explain(tool="unknown", operation="x", params={}, context={}).trace
    assert [(t.rule_id, t.outcome) for t in trace] == [("any-tool", "operation")]


def test_glob_rules_are_candidates_only_for_names_they_match() -> None:
    policy = load(
        """
        rules:
          - {id: stripe, match: {tool: "stripe.*", amount_gt: 1}, require_approval: true}
          - {id: github, match: {tool: ["github.*", gh], amount_gt: 1}, allow: true}
          - {id: refund, match: {tool: refund, amount_gt: 1}, allow: true}
          - {id: every, match: {operation: x}, allow: true}
        """
    )

    def candidates(tool: str) -> list[str]:
        return [t.rule_id for t in policy.explain(tool=tool, operation="x", params={}, context={}).trace]

    assert candidates("refund") == ["refund", "every"]
    assert candidates("stripe.charges") == ["stripe", "every"]
    assert candidates("GitHub.issues") == ["github", "every"]
    assert candidates("gh") == ["github", "every"]
    assert candidates("other") == ["every"]
    # many distinct unknown names: the per-policy memo stays bounded and answers stay right
    for i in range(5000):
        d = policy.evaluate(tool=f"stripe.t{i}", operation="x", params={"amount": 2}, context={})
        assert d.rule_id == "stripe"
        assert policy.evaluate(tool=f"x{i}", operation="x", params={"amount": 2}, context={}).rule_id == "every"
    assert len(policy._glob_memo) <= 4096
    d = policy.evaluate(tool="stripe.t4999", operation="x", params={"amount": 2}, context={})
    assert d.rule_id == "stripe"


def test_glob_rules_keep_their_place_in_file_order() -> None:
    policy = load(
        """
        rules:
          - {id: a, match: {tool: x, amount_gt: 5}, deny: true}
          - {id: b, match: {tool: "x*"}, require_approval: true}
          - {id: c, match: {tool: x}, allow: true}
        """
    )
    assert policy.evaluate(tool="x", operation="o", params={"amount": 9}, context={}).rule_id == "a"
    assert policy.evaluate(tool="x", operation="o", params={"amount": 1}, context={}).rule_id == "b"
    assert policy.evaluate(tool="xy", operation="o", params={}, context={}).rule_id == "b"


def test_decisions_are_immutable() -> None:
    d = load("rules:\n  - allow: true\n").evaluate(tool="t", operation="o", params={}, context={})
    with pytest.raises(AttributeError):
        d.effect = Effect.DENY  # type: ignore[misc]


def test_starter_policy() -> None:
    policy = load_starter_policy()
    assert [r.id for r in policy.rules] == ["large-refunds", "small-refunds", "user-deletion", "shell-commands"]
    assert policy.default is Effect.DENY
    assert refund(policy, {"amount": 150}).rule_id == "large-refunds"
    assert refund(policy, {"amount": 50}).rule_id == "small-refunds"
    d = policy.evaluate(tool="user_management", operation="delete", params={"user_id": "u1"}, context={})
    assert (d.effect, d.reason, d.risk) == (Effect.DENY, "Deleting users is not allowed for agents", "critical")
    d = policy.evaluate(tool="shell", operation="anything", params={}, context={})
    assert (d.effect, d.risk) == (Effect.REQUIRE_APPROVAL, "high")
    assert policy.evaluate(tool="email", operation="send", params={}, context={}).effect is Effect.DENY
    assert load_starter_policy().hash == policy.hash

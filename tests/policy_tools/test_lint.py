"""`lint`: each finding on a policy that has it, and silence on one that does not."""

from __future__ import annotations

from faramesh.policy import Policy
from faramesh.policy.tooling import lint


def codes(text: str) -> list[tuple[str, str | None]]:
    return [(f.code, f.rule_id) for f in lint(Policy.from_yaml(text))]


CLEAN = """
default: deny
rules:
  - id: no-big
    match: {tool: refund, amount_gt: 1000}
    deny: true
  - id: big
    match: {tool: refund, amount_gt: 100}
    require_approval: true
    approval: {timeout: 1h}
  - id: small
    match: {tool: refund, amount_lte: 100}
    allow: true
  - id: ls
    match: {tool: shell, command_matches: 'ls( -[a-z]+)*( [\\w./-]+)*'}
    allow: true
"""


def test_a_clean_policy_has_no_findings() -> None:
    assert codes(CLEAN) == []


def test_a_rule_behind_a_broader_one_is_unreachable() -> None:
    found = lint(
        Policy.from_yaml(
            """
rules:
  - id: big
    match: {tool: refund, amount_gt: 100}
    require_approval: true
    approval: {timeout: 1h}
  - id: huge
    match: {tool: refund, amount_gt: 1000}
    deny: true
  - id: some
    match: {tool: refund, amount_gt: 50}
    allow: true
"""
        )
    )
    unreachable = [f for f in found if f.code == "unreachable-rule"]
    assert [f.rule_id for f in unreachable] == ["huge"]  # `some` still decides 50 < amount <= 100
    assert "decided first by big" in unreachable[0].message and unreachable[0].line == 7


def test_unreachable_through_globs_combinators_and_contradictions() -> None:
    text = """
rules:
  - id: all-stripe
    match: {tool: "stripe.*"}
    deny: true
  - id: stripe-refund
    match: {tool: stripe.refund}
    allow: true
  - id: prod-or-staging
    match: {tool: db, any: [{context.env_eq: prod}, {context.env_eq: staging}]}
    deny: true
  - id: prod
    match: {tool: db, context.env_in: [prod]}
    allow: true
  - id: never
    match: {tool: x, amount_gt: 5, amount_lt: 3}
    allow: true
"""
    assert {rid for code, rid in codes(text) if code == "unreachable-rule"} == {"stripe-refund", "prod", "never"}


def test_allow_before_a_narrower_deny_is_reported_with_an_example() -> None:
    found = lint(
        Policy.from_yaml(
            """
rules:
  - id: refunds
    match: {tool: refund}
    allow: true
  - id: no-big
    match: {tool: refund, amount_gt: 1000}
    deny: true
  - id: catch-all
    deny: true
"""
        )
    )
    overlap = [f for f in found if f.code == "allow-before-deny"]
    # the narrower deny is swallowed; the final catch-all deny is the usual "deny the rest"
    assert [f.rule_id for f in overlap] == ["refunds"]
    assert "no-big" in overlap[0].message
    assert overlap[0].example is not None and overlap[0].example["params"]["amount"] > 1000


def test_regular_expressions() -> None:
    found = codes(
        """
rules:
  - id: wide
    match: {tool: shell, command_matches: 'ls.*'}
    allow: true
  - id: no-spaces
    match: {tool: shell, command_matches: 'cat [^ ]+'}
    allow: true
  - id: slow
    match: {tool: x, name_matches: '(a+)+b'}
    deny: true
  - id: deny-wide-is-fine
    match: {tool: y, command_matches: '.*rm -rf.*'}
    deny: true
  - id: but-not-under-not
    match: {tool: z, not: {command_matches: 'safe.*'}}
    deny: true
"""
    )
    assert ("regex-wildcard", "wide") in found
    assert ("regex-wildcard", "no-spaces") in found  # [^ ] lets ; | & $ through
    assert ("regex-backtracking", "slow") in found
    assert ("regex-wildcard", "but-not-under-not") in found  # "deny unless safe.*" lets anything safe… through
    assert not [rid for code, rid in found if rid == "deny-wide-is-fine"]


def test_default_allow_names_an_unmentioned_tool() -> None:
    found = lint(Policy.from_yaml("default: allow\nrules:\n  - match: {tool: shell}\n    deny: true\n"))
    [finding] = [f for f in found if f.code == "default-allow"]
    assert finding.example is not None and finding.example["tool"] != "shell"
    # a final catch-all rule means the default is never used
    assert not [
        f for f in lint(Policy.from_yaml("default: allow\nrules:\n  - deny: true\n")) if f.code == "default-allow"
    ]


def test_approvals_without_timeout_and_name_fields() -> None:
    found = codes(
        """
rules:
  - id: wait
    match: {tool: deploy}
    require_approval: true
  - id: names
    match: {tool: x, tool_in: [a, b]}
    deny: true
"""
    )
    assert ("approval-timeout", "wait") in found and ("name-field", "names") in found


def test_ignore_and_render() -> None:
    policy = Policy.from_yaml("rules:\n  - match: {tool: deploy}\n    require_approval: true\n", source="p.yaml")
    [finding] = lint(policy)
    assert finding.render("p.yaml").startswith("p.yaml:2:5: approval-timeout: rule rules[0]:")
    assert lint(policy, ignore=("approval-timeout",)) == []


FREE_TEXT = """
default: deny
rules:
  - id: no-rm
    match: {tool: shell, command_contains: "rm -rf"}
    deny: true
  - id: no-sudo
    match: {tool: shell, any: [{command_matches: '.*sudo.*'}, {context.note_contains: sudo}]}
    deny: true
  - id: shell
    match: {tool: shell}
    allow: true
"""


def test_a_deny_on_free_text_is_reported_with_the_way_around_it() -> None:
    found = [f for f in lint(Policy.from_yaml(FREE_TEXT)) if f.code == "free-text-deny"]
    assert [(f.rule_id, f.line) for f in found] == [("no-rm", 5), ("no-sudo", 8), ("no-sudo", 8)]
    assert "compared exactly" in found[0].message and "command_in" in found[0].message


def test_a_pinned_field_or_an_allow_list_is_not_free_text() -> None:
    pinned_here = """
default: deny
rules:
  - id: no-rm
    match: {tool: shell, command_in: ["rm -rf /", "ls"], command_contains: rm}
    deny: true
  - id: shell
    match: {tool: shell}
    allow: true
"""
    allow_list = FREE_TEXT.replace(
        "match: {tool: shell}\n", "match: {tool: shell, command_matches: 'ls( -[a-z]+)*', context.note_eq: x}\n"
    )
    list_of_groups = """
default: deny
rules:
  - id: readers
    match: {tool: db, agent.groups_contains: readers-banned}
    deny: true
  - id: db
    match: {tool: db}
    allow: true
"""
    for text in (pinned_here, allow_list, list_of_groups):
        assert "free-text-deny" not in [c for c, _ in codes(text)], text


def test_default_allow_makes_every_free_text_deny_a_finding() -> None:
    text = "default: allow\nrules:\n  - {id: x, match: {tool: shell, command_contains: rm}, deny: true}\n"
    assert ("free-text-deny", "x") in codes(text)

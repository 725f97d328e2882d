"""Loading: every validation error names its line, column and key, and suggests a fix."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from faramesh.policy import Effect, Policy, PolicyError, PolicyProblem
from tests.policy.seed import SEED_POLICY


def problems(text: str) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(textwrap.dedent(text), source="p.yaml")
    assert info.value.problems, "a PolicyError always lists its problems"
    return info.value.problems


def one_problem(text: str) -> PolicyProblem:
    found = problems(text)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_seed_policy_loads_with_defaults() -> None:
    policy = Policy.from_yaml(SEED_POLICY)
    assert policy.source == "<string>"
    assert policy.default is Effect.DENY
    assert [(r.id, r.effect, r.reason, r.risk, r.line) for r in policy.rules] == [
        ("rules[0]", Effect.REQUIRE_APPROVAL, "Large refunds need approval", "high", 2),
        ("rules[1]", Effect.ALLOW, "Small refunds allowed", "low", 9),
    ]
    assert policy.source_text.startswith("rules:\n")


def test_metadata_keys_are_accepted() -> None:
    policy = Policy.from_yaml('version: 2\nname: billing\ndescription: "Billing agents"\ndefault: allow\nrules: []\n')
    assert (policy.version, policy.name, policy.description, policy.default) == (
        2,
        "billing",
        "Billing agents",
        Effect.ALLOW,
    )
    assert policy.rules == ()


def test_error_string_lists_every_problem_on_its_own_line() -> None:
    text = """\
        rules:
          - match: {tool: refund, amount_gtt: 100}
            allow: true
          - match: {tool: refund}
            requires_approval: true
        """
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(textwrap.dedent(text), source="policy.yaml")
    lines = str(info.value).splitlines()
    # the misspelt effect is reported once, not also as "the rule has no effect"
    assert lines == [
        "policy.yaml:2:27: rules[0].match.amount_gtt: unknown condition 'amount_gtt' (did you mean amount_gt?)",
        "policy.yaml:5:5: rules[1].requires_approval: unknown rule key 'requires_approval' "
        "(did you mean require_approval?)",
    ]
    first = info.value.problems[0]
    assert first == PolicyProblem(
        "policy.yaml", 2, 27, "rules[0].match.amount_gtt", "unknown condition 'amount_gtt'", "did you mean amount_gt?"
    )


def test_all_problems_are_collected_in_file_order() -> None:
    found = problems(
        """\
        default: denny
        rulez: []
        rules:
          - match:
              tool: "refund"
              amount_gtt: 100
              amount_gt: "100"
            allow: true
            risk: extreme
          - match: {tool: x}
            allow: false
          - id: a
            match: {tool: x}
            allow: true
            deny: true
            approval: {timeout: 15x, quorum: 0}
          - id: a
            match: {tool: "bad name"}
            deny: true
        """
    )
    assert [(p.line, p.key) for p in found] == [
        (1, "default"),
        (2, "rulez"),
        (6, "rules[0].match.amount_gtt"),
        (7, "rules[0].match.amount_gt"),
        (9, "rules[0].risk"),
        (11, "rules[1].allow"),
        (12, "rules[2]"),  # two effects; approval: is then not checked against the effect
        (16, "rules[2].approval.timeout"),
        (16, "rules[2].approval.quorum"),
        (17, "rules[3].id"),
        (18, "rules[3].match.tool"),
    ]
    assert [p.line for p in found] == sorted(p.line for p in found)


# -- YAML itself -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("rules: [\n", 2),
        ("rules:\n  - match: {tool: x}\n    allow: true\n   deny: true\n", 4),
        ("rules:\n  - match: {tool: 'x}\n", 3),
        ("rules: []\n---\nrules: []\n", 2),
        ("rules:\n\t- allow: true\n", 2),
    ],
)
def test_invalid_yaml_reports_the_line(text: str, line: int) -> None:
    p = one_problem(text)
    assert p.line == line
    assert p.message.startswith("invalid YAML")
    assert p.source == "p.yaml"


def test_tab_indentation_gets_a_hint() -> None:
    p = one_problem("rules:\n\t- allow: true\n")
    assert p.line == 2 and "tabs" in p.hint


def test_duplicate_keys_are_errors_and_other_problems_are_still_reported() -> None:
    found = problems(
        """\
        rules:
          - match:
              tool: refund
              tool: user_management
            allow: true
            allow: true
            risk: hi
        """
    )
    assert [(p.line, p.column, p.key) for p in found] == [
        (4, 7, "rules[0].match.tool"),
        (6, 5, "rules[0].allow"),
        (7, 11, "rules[0].risk"),
    ]
    assert "duplicate key 'tool' (first defined on line 3)" in found[0].message
    assert found[2].hint == "did you mean high?"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the policy is empty"),
        ("# only a comment\n", "the policy is empty"),
        ("- allow: true\n", "must be a mapping"),
        ("default: deny\n", "has no rules: list"),
        ("rules: {allow: true}\n", "rules must be a list"),
        ("rules:\n  - allow\n", "a rule must be a mapping"),
        ("rules: []\n1: x\n", "keys must be strings"),
        ("rules: []\nversion: [1]\n", "expected a string or an integer"),
        ("rules: []\nname: ''\n", "name must be a non-empty string"),
    ],
)
def test_document_shape_errors(text: str, message: str) -> None:
    assert message in one_problem(text).message


def test_python_tags_are_rejected_not_executed() -> None:
    p = one_problem("rules: []\nname: !!python/object/apply:os.system ['echo hacked']\n")
    assert p.line == 2
    found = problems("rules: []\nname: !!python/name:os.system ''\n")
    assert found[0].line == 2


def test_self_referencing_alias_is_an_error() -> None:
    p = problems("rules:\n  - &r\n    match: {any: [*r]}\n    allow: true\n")[0]
    assert (p.line, p.key) == (2, "rules[0].match.any[0]")
    assert "refers to itself" in p.message


def test_alias_bomb_is_rejected_quickly() -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join('*' + prev for _ in range(9))}]")
    lines.append("rules: *i")
    # The document would expand to 9**9 values. This process's CPU time, not the wall
    # clock, so a machine busy with other work cannot fail it: the bounded parse takes
    # well under a second of CPU, a full expansion minutes.
    started = time.process_time()
    p = one_problem("\n".join(lines) + "\n")
    assert "expands to more than" in p.message
    assert time.process_time() - started < 5


def test_anchors_and_merge_keys_work() -> None:
    policy = Policy.from_yaml(
        "rules:\n  - &r {match: {tool: a}, deny: true, risk: high, reason: nope}\n  - {<<: *r, match: {tool: b}}\n"
    )
    assert [(r.id, r.effect, r.risk, r.reason) for r in policy.rules] == [
        ("rules[0]", Effect.DENY, "high", "nope"),
        ("rules[1]", Effect.DENY, "high", "nope"),
    ]
    assert policy.evaluate(tool="b", operation="x", params={}, context={}).rule_id == "rules[1]"


def test_merged_keys_count_towards_one_effect() -> None:
    p = one_problem("rules:\n  - &r {match: {tool: a}, deny: true}\n  - {<<: *r, allow: true}\n")
    assert p.key == "rules[1]" and "allow: true and deny: true" in p.message


# -- rules -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "line", "column", "key", "message", "hint"),
    [
        ("match: {tool: x}\n", 1, 5, "rules[0]", "the rule has no effect", "add one of allow: true"),
        ("allow: false\n", 1, 12, "rules[0].allow", "allow: false has no meaning", "remove allow: false"),
        ("deny: false\n", 1, 11, "rules[0].deny", "deny: false has no meaning", "remove deny: false"),
        ("allow: 'true'\n", 1, 12, "rules[0].allow", "allow must be true", "write allow: true"),
        ("allow: true\ndeny: true\n", 1, 5, "rules[0]", "this one has allow: true and deny: true", "keep only one"),
        (
            "requires_approval: true\nallow: true\n",
            1,
            5,
            "rules[0].requires_approval",
            "unknown rule key",
            "did you mean require_approval?",
        ),
        ("allow: true\nreasons: x\n", 2, 5, "rules[0].reasons", "unknown rule key", "did you mean reason?"),
        ("allow: true\nzzz: 1\n", 2, 5, "rules[0].zzz", "unknown rule key", "expected one of id, match"),
        (
            "allow: true\ntool: x\n",
            2,
            5,
            "rules[0].tool",
            "tool is a condition, not a rule setting",
            "put it inside match:",
        ),
        ("allow: true\namount_gt: 5\n", 2, 5, "rules[0].amount_gt", "is a condition", "put it inside match:"),
        ("allow: true\nrisk: severe\n", 2, 11, "rules[0].risk", "invalid risk 'severe'", "expected one of low"),
        ("allow: true\nrisk: hgh\n", 2, 11, "rules[0].risk", "invalid risk 'hgh'", "did you mean high?"),
        ("allow: true\nreason: ''\n", 2, 13, "rules[0].reason", "non-empty string", ""),
        ("allow: true\nreason: [a]\n", 2, 13, "rules[0].reason", "non-empty string", ""),
        ("allow: true\nid: 'has space'\n", 2, 9, "rules[0].id", "invalid rule id 'has space'", "up to 128"),
        ("allow: true\nid: 'rules[1]'\n", 2, 9, "rules[0].id", "invalid rule id", ""),
        ("allow: true\nmatch: null\n", 2, 12, "rules[0].match", "must be a mapping of conditions", ""),
        ("allow: true\nmatch: [tool]\n", 2, 12, "rules[0].match", "must be a mapping of conditions", ""),
        ("allow: true\ndescription: 5\n", 2, 18, "rules[0].description", "non-empty string", ""),
    ],
)
def test_rule_errors(rule: str, line: int, column: int, key: str, message: str, hint: str) -> None:
    body = textwrap.indent(rule, "    ")
    text = "rules:\n  -" + body[3:]
    p = problems(text)[0]
    assert (p.line - 1, p.column, p.key) == (line, column, key), str(p)
    assert message in p.message
    assert hint in p.hint


def test_integer_ids_are_accepted_and_duplicate_ids_rejected() -> None:
    policy = Policy.from_yaml("rules:\n  - {id: 7, allow: true}\n")
    assert policy.rules[0].id == "7"
    p = one_problem("rules:\n  - {id: a, allow: true}\n  - {id: b, deny: true}\n  - {id: a, deny: true}\n")
    assert (p.line, p.key) == (4, "rules[2].id")
    assert "already used on line 2" in p.hint


# -- match ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "key", "message", "hint"),
    [
        ("amount_gtt: 100", "amount_gtt", "unknown condition 'amount_gtt'", "did you mean amount_gt?"),
        ("amount_greater: 100", "amount_greater", "unknown condition", "did you mean amount_gte?"),
        ("order_total_lse: 5", "order_total_lse", "unknown condition", "did you mean order_total_lte?"),
        ("tol: x", "tol", "unknown condition 'tol'", "did you mean tool?"),
        ("operations: x", "operations", "unknown condition", "did you mean operation?"),
        ("anyy: []", "anyy", "unknown condition", "did you mean any?"),
        ("amount: 5", "amount", "a field needs an operator", "e.g. amount_eq, amount_gt"),
        ("allow: true", "allow", "allow is a rule setting, not a condition", "move allow out of match:"),
        ("reason: x", "reason", "reason is a rule setting", "move reason out of match:"),
        ("amount_gt: '100'", "amount_gt", "expected a number, got '100'", "without quotes"),
        ("amount_gt: true", "amount_gt", "expected a number, got True", ""),
        ("amount_lte: .nan", "amount_lte", "expected a number", ""),
        ("amount_lt: .inf", "amount_lt", "expected a number", ""),
        ("amount_gte: [1]", "amount_gte", "expected a number, got a list", ""),
        ("amount_gt: null", "amount_gt", "expected a number, got nothing (null)", ""),
        ("tier_eq: null", "tier_eq", "expected a string, number or boolean", "_exists: false"),
        ("tier_eq: [gold]", "tier_eq", "expected a string, number or boolean, got a list", "use _in"),
        ("tier_ne: {a: 1}", "tier_ne", "got a mapping", ""),
        ("tier_in: gold", "tier_in", "expected a list, got 'gold'", "[gold, platinum]"),
        ("tier_in: []", "tier_in", "the list is empty", "at least one value"),
        ("tier_not_in: [[a]]", "tier_not_in", "list item", ""),
        ("tier_in: [a, null]", "tier_in", "list item", ""),
        ("tags_contains: [a]", "tags_contains", "expected a string, number or boolean", ""),
        ("path_startswith: 5", "path_startswith", "expected a string, got 5", ""),
        ("path_endswith: null", "path_endswith", "expected a string", ""),
        ("cmd_matches: '(unclosed'", "cmd_matches", "invalid regular expression", "fix the pattern"),
        ("cmd_matches: 5", "cmd_matches", "expected a regular expression string", ""),
        ("approved_exists: 'yes'", "approved_exists", "expected true or false", ""),
        ("tool: 5", "tool", "expected a name or glob string, got 5", "quote it"),
        ("tool: ''", "tool", "expected a name or glob string", ""),
        ("tool: []", "tool", "the list of names is empty", ""),
        ("tool: 'bad name'", "tool", "invalid name pattern 'bad name'", "only letters, digits"),
        ("tool: 'stripe.[ab]'", "tool", "invalid name pattern", "the globs * and ?"),
        ("tool: [a, {b: c}]", "tool", "expected a name or glob string", ""),
        ("op: 'dele te'", "op", "invalid name pattern", ""),
        ("any: []", "any", "takes a non-empty list", ""),
        ("all: {a_eq: 1}", "all", "takes a non-empty list", ""),
        ("any: [{}]", "any[0]", "an empty mapping in any/all is always true", ""),
        ("any: [5]", "any[0]", "must be a mapping of conditions", ""),
        ("not: [a_eq: 1]", "not", "not: takes a mapping", ""),
        ("not: {}", "not", "not: of an empty mapping never matches", ""),
        ("any: [{amount_gtt: 1}]", "any[0].amount_gtt", "unknown condition", "did you mean amount_gt?"),
        ("not: {all: [{x_eq: 1}, {y_in: 2}]}", "not.all[1].y_in", "expected a list", ""),
        ("params..x_eq: 1", "params..x_eq", "invalid field path 'params..x'", ""),
        (".x_eq: 1", ".x_eq", "invalid field path", ""),
    ],
)
def test_match_errors(match: str, key: str, message: str, hint: str) -> None:
    text = f"rules:\n  - match:\n      {match}\n    allow: true\n"
    p = one_problem(text)
    assert p.key == f"rules[0].match.{key}", str(p)
    assert p.line == 3
    assert message in p.message, str(p)
    assert hint in p.hint, str(p)


def test_value_errors_point_at_the_value() -> None:
    p = one_problem("rules:\n  - match: {tool: refund, amount_gt: '100'}\n    allow: true\n")
    assert (p.line, p.column) == (2, 38)
    p = one_problem("rules:\n  - match:\n      amount_gtt: 100\n    allow: true\n")
    assert (p.line, p.column) == (3, 7)


def test_regex_length_limit() -> None:
    long = "a" * 1001
    p = one_problem(f"rules:\n  - match: {{cmd_matches: '{long}'}}\n    allow: true\n")
    assert "1001 characters" in p.message and "1000" in p.hint
    Policy.from_yaml(f"rules:\n  - match: {{cmd_matches: '{'a' * 1000}'}}\n    allow: true\n")


def test_operation_and_op_together_is_an_error() -> None:
    p = one_problem("rules:\n  - match: {operation: a, op: b}\n    allow: true\n")
    assert p.key == "rules[0].match.op" and "both operation and its alias op" in p.message


def test_default_errors() -> None:
    p = one_problem("default: allwo\nrules: []\n")
    assert (p.line, p.column, p.key, p.hint) == (1, 10, "default", "did you mean allow?")
    p = one_problem("default: true\nrules: []\n")
    assert "expected one of allow, deny, require_approval" in p.hint


def test_unknown_top_level_key_suggests() -> None:
    p = one_problem("rules: []\ndefualt: deny\n")
    assert (p.line, p.key, p.hint) == (2, "defualt", "did you mean default?")


# -- approval, rate_limit, budget, during ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "key", "message", "hint"),
    [
        (
            "require_approval: true\napproval: {timeout: 15x}",
            "approval.timeout",
            "invalid duration '15x'",
            "e.g. 30s, 15m",
        ),
        ("require_approval: true\napproval: {timeout: 0}", "approval.timeout", "must be positive", ""),
        ("require_approval: true\napproval: {timeout: -5}", "approval.timeout", "must be positive", ""),
        ("require_approval: true\napproval: {timeout: true}", "approval.timeout", "expected a duration", ""),
        ("require_approval: true\napproval: {timeout: [1]}", "approval.timeout", "expected a duration", ""),
        ("require_approval: true\napproval: {quorum: 0}", "approval.quorum", "at least 1, got 0", ""),
        ("require_approval: true\napproval: {quorum: '2'}", "approval.quorum", "whole number", ""),
        ("require_approval: true\napproval: {quorum: true}", "approval.quorum", "whole number", ""),
        ("require_approval: true\napproval: {quorum: 1.5}", "approval.quorum", "whole number", ""),
        ("require_approval: true\napproval: {approvers: ['']}", "approval.approvers", "list of group names", ""),
        ("require_approval: true\napproval: {approvers: [[a]]}", "approval.approvers", "group names", ""),
        ("require_approval: true\napproval: {timout: 5m}", "approval.timout", "unknown key", "did you mean timeout?"),
        ("require_approval: true\napproval: 15m", "approval", "approval must be a mapping", ""),
        ("allow: true\napproval: {timeout: 5m}", "approval", "only applies to require_approval rules", ""),
        ("deny: true\nrate_limit: {max: 5, per: 1m}", "rate_limit", "no effect on a deny rule", ""),
        ("allow: true\nrate_limit: {per: 1m}", "rate_limit.max", "max is required", ""),
        ("allow: true\nrate_limit: {max: 5}", "rate_limit.per", "per is required", ""),
        ("allow: true\nrate_limit: {max: 0, per: 1m}", "rate_limit.max", "at least 1", ""),
        ("allow: true\nrate_limit: {max: 5, per: 1y}", "rate_limit.per", "invalid duration", ""),
        ("allow: true\nrate_limit: {max: 5, per: 1m, key: 'agent..id'}", "rate_limit.key", "empty segment", ""),
        ("allow: true\nrate_limit: {max: 5, per: 1m, key: 5}", "rate_limit.key", "must be a field path", ""),
        ("allow: true\nrate_limit: {max: 5, per: 1m, maxx: 2}", "rate_limit.maxx", "unknown key", "did you mean max?"),
        ("deny: true\nbudget: {sum: amount, max: 5, per: 1d}", "budget", "no effect on a deny rule", ""),
        ("allow: true\nbudget: {max: 5, per: 1d}", "budget.sum", "sum is required", ""),
        ("allow: true\nbudget: {sum: context.amount, max: 5, per: 1d}", "budget.sum", "must name a params field", ""),
        ("allow: true\nbudget: {sum: amount, per: 1d}", "budget.max", "max is required", ""),
        ("allow: true\nbudget: {sum: amount, max: 0, per: 1d}", "budget.max", "positive number", ""),
        ("allow: true\nbudget: {sum: amount, max: '5', per: 1d}", "budget.max", "positive number", ""),
        ("allow: true\nbudget: {sum: amount, max: 5}", "budget.per", "per is required", ""),
        ("allow: true\nduring: {}", "during", "needs days, hours or both", ""),
        ("allow: true\nduring: {days: mon-fry}", "during.days", "unknown day 'fry'", "use mon, tue"),
        ("allow: true\nduring: {days: [mon, 5]}", "during.days", "days must be a string", ""),
        ("allow: true\nduring: {days: []}", "during.days", "days must be a string", ""),
        ("allow: true\nduring: {hours: '9-17'}", "during.hours", "invalid time '9'", "24-hour HH:MM"),
        ("allow: true\nduring: {hours: '09:00-25:00'}", "during.hours", "invalid time", ""),
        ("allow: true\nduring: {hours: '09:00'}", "during.hours", "HH:MM-HH:MM", ""),
        ("allow: true\nduring: {hours: '09:00-09:00'}", "during.hours", "is empty", ""),
        ("allow: true\nduring: {hours: '24:00-09:00'}", "during.hours", "cannot start at 24:00", ""),
        ("allow: true\nduring: {days: mon, tz: Mars/Base}", "during.tz", "unknown time zone 'Mars/Base'", "IANA name"),
        ("allow: true\nduring: {days: mon, tz: 5}", "during.tz", "must be a time zone name", ""),
        ("allow: true\nduring: {days: mon, hour: '09:00-10:00'}", "during.hour", "unknown key", "did you mean hours?"),
        ("allow: true\nduring: weekdays", "during", "during must be a mapping", ""),
    ],
)
def test_setting_errors(settings: str, key: str, message: str, hint: str) -> None:
    text = "rules:\n  - match: {tool: t}\n" + textwrap.indent(settings, "    ") + "\n"
    p = one_problem(text)
    assert p.key == f"rules[0].{key}", str(p)
    assert p.line >= 3
    assert message in p.message, str(p)
    assert hint in p.hint, str(p)


# -- warnings ------------------------------------------------------------------------------------------------


def test_warnings() -> None:
    policy = Policy.from_yaml(
        "rules:\n"
        "  - {id: ok, match: {tool: a}, require_approval: true, approval: {timeout: 5m}}\n"
        "  - {id: open, match: {tool: b}, require_approval: true}\n"
        "  - {id: names, match: {tool_in: [a, b]}, deny: true}\n"
        "  - {id: all, allow: true}\n"
        "  - {id: never, match: {tool: c}, deny: true}\n",
        source="w.yaml",
    )
    assert len(policy.warnings) == 3
    assert policy.warnings[0].startswith("w.yaml:3:5: rules[1]: rule open requires approval")
    assert "tool_in tests params.tool" in policy.warnings[1]
    assert "rule all matches every action, so these rules can never match: never" in policy.warnings[2]
    assert Policy.from_yaml("rules:\n  - {match: {params.tool_eq: x}, allow: true}\n").warnings == []


# -- files -------------------------------------------------------------------------------------------------------


def test_from_file_uses_the_path_as_source(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("rules:\n  - match: {tool: x}\n    alow: true\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        Policy.from_file(path)
    assert str(info.value).startswith(f"{path}:3:5: rules[0].alow: unknown rule key 'alow' (did you mean allow?)")
    path.write_text("rules:\n  - match: {tool: x}\n    allow: true\n", encoding="utf-8")
    policy = Policy.from_file(path)
    assert policy.source == str(path)
    assert policy.evaluate(tool="x", operation="y", params={}, context={}).effect is Effect.ALLOW


def test_from_file_errors_are_policy_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_file(tmp_path / "missing.yaml")
    assert "cannot read the policy file" in str(info.value)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("rules: []\nname: caf\xe9\n".encode("latin-1"))
    with pytest.raises(PolicyError) as info:
        Policy.from_file(bad)
    assert "not UTF-8" in str(info.value)


def test_exponent_numbers_without_a_dot_are_numbers() -> None:
    # YAML 1.1 would read 1e6 as a string; policies accept it as YAML 1.2 does
    policy = Policy.from_yaml("rules:\n  - {match: {amount_gt: 1e3, fee_lt: -2.5E-1}, allow: true}\n")
    assert policy.evaluate(tool="t", operation="o", params={"amount": 1001, "fee": -1}, context={}).effect is (
        Effect.ALLOW
    )
    assert policy.evaluate(tool="t", operation="o", params={"amount": 1000, "fee": -1}, context={}).effect is (
        Effect.DENY
    )
    assert Policy.from_yaml("rules: []\nname: 1e3x\n").name == "1e3x"

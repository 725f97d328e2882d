"""Policy files read scalars as YAML 1.2: a value means what it looks like.

YAML 1.1 (PyYAML's default) reads yes/no/on/off as booleans, 010 as 8, 1:30 as 90 and
2024-01-05 as a date, so a list of user names in a deny rule silently lost four names.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from faramesh.notify.webhooks import load_webhook_file
from faramesh.policy import Effect, Policy, PolicyError
from faramesh.policy.packs import list_packs
from faramesh.policy.tooling.cases import load_cases

DENY_USERS = """
default: allow
rules:
  - id: block-users
    match:
      tool: admin
      user_in: [admin, no, off, yes, on, No, OFF, y, n]
    deny: true
"""


def load(text: str) -> Policy:
    return Policy.from_yaml(textwrap.dedent(text), source="p.yaml")


@pytest.mark.parametrize("user", ["no", "off", "yes", "on", "No", "OFF", "y", "n", "admin"])
def test_yes_no_on_off_in_a_list_are_user_names(user: str) -> None:
    decision = load(DENY_USERS).evaluate(tool="admin", operation="run", params={"user": user})
    assert decision.effect is Effect.DENY, user
    assert decision.rule_id == "block-users"


def test_a_real_boolean_param_does_not_match_the_word_no() -> None:
    decision = load(DENY_USERS).evaluate(tool="admin", operation="run", params={"user": False})
    assert decision.effect is Effect.ALLOW


@pytest.mark.parametrize(
    ("written", "value"),
    [("010", "010"), ("1:30", "1:30"), ("2024-01-05", "2024-01-05"), ("0755", "0755"), ("on", "on")],
)
def test_ids_and_times_in_string_positions_stay_as_written(written: str, value: str) -> None:
    policy = load(
        f"""
        rules:
          - match: {{tool: t, ref_eq: {written}}}
            deny: true
        """
    )
    assert policy.evaluate(tool="t", operation="x", params={"ref": value}).effect is Effect.DENY
    assert policy.rules[0].spec["match"]["where"][0]["value"] == value


@pytest.mark.parametrize("word", ["yes", "on", "Yes", "ON", "y"])
def test_an_effect_written_yes_is_an_error_with_line_and_fix(word: str) -> None:
    with pytest.raises(PolicyError) as info:
        load(
            f"""
            rules:
              - match: {{tool: t}}
                allow: {word}
            """
        )
    [problem] = info.value.problems
    assert (problem.line, problem.key) == (4, "rules[0].allow")
    assert repr(word) in problem.message
    assert problem.hint == "write allow: true"


def test_exists_written_no_is_an_error_with_the_fix() -> None:
    with pytest.raises(PolicyError) as info:
        load(
            """
            rules:
              - match: {tool: t, approved_by_exists: no}
                deny: true
            """
        )
    [problem] = info.value.problems
    assert problem.line == 3 and "write true or false" in problem.hint


@pytest.mark.parametrize(("written", "fix"), [("010", "write 10"), ("1:30", "one decimal number")])
def test_octal_and_base_60_numbers_are_errors_not_other_numbers(written: str, fix: str) -> None:
    with pytest.raises(PolicyError) as info:
        load(
            f"""
            rules:
              - match: {{tool: t, amount_gt: {written}}}
                deny: true
            """
        )
    [problem] = info.value.problems
    assert problem.line == 3 and fix in problem.hint


def test_a_duration_written_1_30_is_refused_not_read_as_90_seconds() -> None:
    with pytest.raises(PolicyError) as info:
        load(
            """
            rules:
              - match: {tool: t}
                require_approval: true
                approval: {timeout: 1:30}
            """
        )
    assert "invalid duration '1:30'" in info.value.problems[0].message


def test_booleans_numbers_and_nulls_still_read_as_such() -> None:
    policy = load(
        """
        rules:
          - match: {tool: t, a_eq: true, b_eq: False, c_gt: 1_000, d_lt: 1e6, e_eq: 0x10, f_exists: TRUE}
            deny: true
        """
    )
    where = {w["field"]: w["value"] for w in policy.rules[0].spec["match"]["where"]}
    assert where == {
        "params.a": True,
        "params.b": False,
        "params.c": 1000,
        "params.d": 1000000,
        "params.e": 16,
        "params.f": True,
    }


def test_cases_files_read_the_same_way() -> None:
    [case] = load_cases("- {tool: admin, operation: run, params: {user: no, ref: 010}, expect: deny}")
    assert case.params == {"user": "no", "ref": "010"}


def test_webhook_files_read_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "hooks.yaml"
    path.write_text("- {url: 'https://example.com/h', secret: 0123456789abcdef0123, description: no}\n")
    [hook] = load_webhook_file(path)
    assert hook.description == "no"


def test_pack_index_loads() -> None:
    assert all(isinstance(p.name, str) and p.name for p in list_packs())

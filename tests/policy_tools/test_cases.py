"""Fixture cases: loading (with lines for every problem), running, and the report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from faramesh.policy import Effect, Policy
from faramesh.policy.tooling import CasesError, load_cases, run_cases

POLICY = Policy.from_file(Path(__file__).parents[1] / "fixtures" / "seed_policy.yaml")


def test_cases_run_and_render_a_table() -> None:
    cases = load_cases(
        """
- name: small
  tool: refund
  op: process
  params: {amount: 50}
  expect: allow
  reason: Small refunds allowed
  rule: rules[1]
- name: wrong on purpose
  tool: refund
  operation: process
  params: {amount: 500}
  expect: allow
- tool: user_management
  operation: delete
  expect: deny
  rule: default
"""
    )
    assert [c.name for c in cases] == ["small", "wrong on purpose", "user_management.delete #3"]
    report = run_cases(POLICY, cases)
    assert (report.passed, report.failed, report.ok) == (1, 2, False)
    text = report.render()
    lines = text.splitlines()
    assert lines[0].split() == ["case", "expected", "got", "rule", "result"]
    assert any(line.startswith("small") and line.rstrip().endswith("PASS") for line in lines)
    assert "expected allow, got require_approval: Large refunds need approval" in text
    assert "expected rule default, got rules[2]" in text
    assert text.endswith("1 passed, 2 failed, 3 total")
    assert report.to_dict()["results"][1]["got"] == "require_approval"


def test_agent_and_time_reach_the_policy() -> None:
    policy = Policy.from_yaml(
        """
rules:
  - match: {tool: deploy, agent.groups_contains: release}
    during: {days: mon-fri, hours: "09:00-17:00"}
    allow: true
"""
    )
    cases = load_cases(
        """
cases:
  - {tool: deploy, operation: run, agent: {id: a, groups: [release]}, now: "2026-01-05T10:00:00Z", expect: allow}
  - {tool: deploy, operation: run, agent: {id: a, groups: [release]}, now: "2026-01-04T10:00:00Z", expect: deny}
  - {tool: deploy, operation: run, agent: bot, now: 2026-01-05T10:00:00Z, expect: deny}
"""
    )
    assert cases[0].now == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert cases[2].agent == {"id": "bot"}
    assert run_cases(policy, cases).ok


def test_every_problem_is_reported_with_its_line() -> None:
    with pytest.raises(CasesError) as exc:
        load_cases(
            """
- tool: refund
  operation: process
  expect: allowed
- tool: refund
  expect: deny
  parms: {}
- operation: x
  params: [1]
  expect: deny
  now: tomorrow
- just a string
""",
            "cases.yaml",
        )
    problems = "\n".join(exc.value.problems)
    assert "cases.yaml:2: case 1: expect must be one of allow, deny, require_approval, got 'allowed'" in problems
    assert "cases.yaml:5: case 2: operation is required" in problems
    assert "cases.yaml:7: case 2: unknown key 'parms'" in problems
    assert "case 3: tool is required" in problems and "case 3: params must be a mapping" in problems
    assert "case 3: now must be an ISO 8601 time" in problems
    assert "cases.yaml:12: case 4: a case is a mapping" in problems


def test_a_file_that_is_not_a_list() -> None:
    with pytest.raises(CasesError, match="a cases file is a list"):
        load_cases("tool: refund\n")
    with pytest.raises(CasesError, match="invalid YAML"):
        load_cases("- [unclosed\n")


def test_effects_are_compared_as_effects() -> None:
    [case] = load_cases("- {tool: refund, operation: process, params: {amount: 500}, expect: require_approval}")
    assert case.expect is Effect.REQUIRE_APPROVAL
    assert run_cases(POLICY, [case]).ok

"""docs/policy.md is checked: its YAML examples load, its error listing is real, its Python runs."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from faramesh.policy import Effect, Policy, PolicyError

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy.md"
BLOCK = re.compile(r"(?:<!-- docs-example: (?P<name>[\w-]+) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.DOTALL)
RULE_KEYS = {
    "id",
    "description",
    "match",
    "allow",
    "deny",
    "require_approval",
    "reason",
    "risk",
    "approval",
    "rate_limit",
    "budget",
    "during",
}


def blocks(lang: str) -> list[tuple[str | None, str]]:
    text = DOC.read_text(encoding="utf-8")
    return [(m["name"], m["body"]) for m in BLOCK.finditer(text) if m["lang"] == lang]


def as_policy(body: str) -> str:
    """Turn a documentation snippet (a whole policy, a list of rules or one rule's keys) into a policy."""
    body = textwrap.dedent(body)
    data = yaml.safe_load(body)
    if isinstance(data, dict) and "rules" in data:
        return body
    if isinstance(data, list):
        return "rules:\n" + textwrap.indent(body, "  ")
    assert isinstance(data, dict) and set(data) <= RULE_KEYS, f"unrecognised snippet:\n{body}"
    if not {"allow", "deny", "require_approval"} & set(data):
        body += "allow: true\n"
    return "rules:\n  - " + textwrap.indent(body, "    ")[4:]


YAML_EXAMPLES = [body for name, body in blocks("yaml") if name != "invalid-policy"]


@pytest.mark.parametrize("body", YAML_EXAMPLES, ids=[f"yaml-{i}" for i in range(len(YAML_EXAMPLES))])
def test_yaml_examples_load(body: str) -> None:
    Policy.from_yaml(as_policy(body))


def test_there_are_examples() -> None:
    assert len(YAML_EXAMPLES) >= 7


def test_error_listing_is_what_the_loader_says() -> None:
    named = dict((name, body) for name, body in blocks("yaml") + blocks("") if name)
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(named["invalid-policy"], source="policy.yaml")
    assert str(info.value) + "\n" == named["invalid-policy-errors"]


def test_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first_policy = blocks("yaml")[0][1]
    (tmp_path / "policy.yaml").write_text(first_policy, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    (code,) = [body for _, body in blocks("python")]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    d = namespace["d"]
    assert (d.effect, d.reason, d.risk, d.rule_id) == (
        Effect.REQUIRE_APPROVAL,
        "Large refunds need approval",
        "high",
        "rules[0]",
    )


def operator_examples() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("## Conditions") : text.index("### Field paths")]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return [re.findall(r"`([^`]+)`", row.rsplit("|", 2)[1])[0] for row in rows]


def test_every_operator_has_a_working_example() -> None:
    examples = operator_examples()
    operators = {op for ex in examples for op in re.findall(r"_(not_in|[a-z]+):", ex)}
    assert operators >= {"gt", "eq", "ne", "in", "not_in", "contains", "startswith", "endswith", "matches", "exists"}
    for example in examples:
        Policy.from_yaml(f"rules:\n  - match: {{{example}}}\n    allow: true\n")

"""docs/recipes.md: every recipe's policy validates and is lint-clean, its cases pass, its claims are proven."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from faramesh.policy.tooling import lint, load_cases, prove, run_cases, validate_text

DOC = (Path(__file__).parents[2] / "docs" / "recipes.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"<!-- recipe: (?P<name>[\w-]+) (?P<part>policy|cases|claims) -->\n```\w*\n(?P<body>.*?)```", re.S)


def recipes() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for m in BLOCK.finditer(DOC):
        parts = found.setdefault(m.group("name"), {})
        assert m.group("part") not in parts, f"recipe {m.group('name')} has two {m.group('part')} blocks"
        parts[m.group("part")] = m.group("body")
    return found


RECIPES = recipes()


def test_there_are_at_least_ten_recipes_each_with_cases() -> None:
    assert len(RECIPES) >= 10
    for name, parts in RECIPES.items():
        assert {"policy", "cases"} <= set(parts), name
    # every marked block was read (a typo in a marker would silently drop a recipe)
    assert DOC.count("<!-- recipe:") == sum(len(p) for p in RECIPES.values())


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe(name: str) -> None:
    parts = RECIPES[name]
    result = validate_text(parts["policy"], f"recipes.md:{name}")
    assert result.policy is not None, "\n".join(result.render())
    policy = result.policy
    # secrets is a best-effort filter on free text, and lint says so (docs/security.md)
    expected = ["free-text-deny", "free-text-deny"] if name == "secrets" else []
    assert [f.code for f in lint(policy)] == expected, [f.render(name) for f in lint(policy)]
    report = run_cases(policy, load_cases(parts["cases"], f"recipes.md:{name}:cases"))
    assert report.ok, report.render()
    for claim in parts.get("claims", "").splitlines():
        if claim.strip():
            proof = prove(policy, claim)
            assert proof.proven and not proof.vacuous, proof.render()

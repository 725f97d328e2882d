"""docs/policy-tools.md says what the tools do: its codes, options and sample outputs are the real ones."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from faramesh.cli.main import main
from faramesh.policy import Policy
from faramesh.policy.tooling import explain, parse_claim, prove
from faramesh.policy.tooling.lint import CODES

DOC = (Path(__file__).parents[2] / "docs" / "policy-tools.md").read_text(encoding="utf-8")
SEED = Policy.from_file(Path(__file__).parents[1] / "fixtures" / "seed_policy.yaml")


def test_the_lint_table_lists_every_code() -> None:
    documented = re.findall(r"^\| `([a-z-]+)` \| ", DOC, re.M)
    assert sorted(documented) == sorted(CODES)


def test_every_command_and_option_in_the_doc_exists() -> None:
    runner = CliRunner()
    text = DOC.replace("\\\n", " ")  # join shell line continuations
    for words, rest in re.findall(r"faramesh ((?:policy|packs) \w+|init|serve)([^\n`|]*)", text):
        result = runner.invoke(main, [*words.split(), "--help"])
        assert result.exit_code == 0, words
        for option in re.findall(r"--[a-z-]+", rest):
            assert option in result.output, f"faramesh {words} has no {option}"


def test_sample_outputs_are_real() -> None:
    proof = prove(SEED, "tool=refund operation=process amount>50 => not allow")
    assert proof.render() in DOC
    explained = explain(SEED, tool="refund", operation="process", params={"amount": 150}).render()
    assert explained in DOC


def test_claims_in_the_doc_parse() -> None:
    for claim in re.findall(r'--claim "([^"]+)"', DOC):
        parse_claim(claim)

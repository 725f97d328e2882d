"""docs/deployment.md stays true: its commands, options, settings and metric names exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml
from click.testing import CliRunner

from faramesh.cli.main import main
from faramesh.config import SETTINGS
from faramesh.observability.metrics import Metrics

DOC = (Path(__file__).resolve().parents[2] / "docs" / "deployment.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, re.S)


def faramesh_commands() -> list[list[str]]:
    """Every `faramesh …` invocation in the shell, ini and dockerfile blocks, as argument lists."""
    found = []
    text = "\n".join(blocks("bash") + blocks("ini")).replace("\\\n", " ")
    for line in text.splitlines():
        match = re.search(r"/bin/faramesh (.*)$", line) or re.match(r"^\s*(?:\w+=\S+\s+)*faramesh (.*)$", line)
        if match:
            words = shlex.split(match.group(1).split("#")[0].split("|")[0].split(">")[0], posix=True)
            found.append(words)
    for block in blocks("dockerfile"):
        for cmd in re.findall(r"CMD (\[.*\])", block):
            found.append(yaml.safe_load(cmd)[1:])
    assert found
    return found


def test_every_command_and_option_in_the_guide_exists() -> None:
    runner = CliRunner()
    for words in faramesh_commands():
        command = [w for w in words if not w.startswith("-")][:2]
        if command[0] in ("serve",):
            command = command[:1]
        result = runner.invoke(main, [*command, "--help"])
        assert result.exit_code == 0, f"faramesh {' '.join(command)} does not exist"
        for option in (w for w in words if w.startswith("--")):
            assert option in result.output, f"faramesh {' '.join(command)} has no {option}"


def test_compose_example_is_valid_yaml_with_two_replicas_on_one_database() -> None:
    [compose] = blocks("yaml")[:1]
    services = yaml.safe_load(compose)["services"]
    a, b = services["faramesh-a"], services["faramesh-b"]
    assert a["environment"] == b["environment"]
    assert a["environment"]["FARAMESH_DATABASE_URL"].startswith("postgresql://")
    known = {s.env for s in SETTINGS}
    assert set(a["environment"]) <= known


def test_environment_variables_in_the_guide_are_settings() -> None:
    named = set(re.findall(r"\bFARAMESH_[A-Z_]+\b", DOC))
    assert named <= {s.env for s in SETTINGS}, named - {s.env for s in SETTINGS}


def test_metrics_table_matches_what_the_server_exposes() -> None:
    documented = set(re.findall(r"^\| `(faramesh_\w+)`", DOC, re.M))
    exposed = set()
    for family in Metrics().registry.collect():
        exposed |= {sample.name for sample in family.samples} | {family.name}
        if family.type in ("counter", "histogram"):
            exposed.add(family.name + ("_total" if family.type == "counter" else ""))
        if family.type == "info":
            exposed.add(family.name + "_info")
    assert documented <= exposed, documented - exposed
    assert {"faramesh_decisions_total", "faramesh_pending_actions", "faramesh_build_info"} <= documented

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


def test_the_guide_describes_every_file_in_deploy_and_names_only_real_ones() -> None:
    root = Path(__file__).resolve().parents[2]
    named = set(re.findall(r"`(deploy/[\w./-]+)`", DOC))
    present = {str(p.relative_to(root)) for p in (root / "deploy").iterdir() if p.is_file()}
    assert named == present, (named - present, present - named)


def test_environment_variables_in_the_guide_are_settings() -> None:
    named = set(re.findall(r"\bFARAMESH_[A-Z_]+\b", DOC))
    client_side = {"FARAMESH_URL", "FARAMESH_API_KEY"}  # read by the SDK and the CLI, not by serve
    assert named <= {s.env for s in SETTINGS} | client_side, named - {s.env for s in SETTINGS}


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
    # Every family the server exposes is documented: its own in the table, the standard
    # process and runtime ones by name.
    families = {f.name for f in Metrics().registry.collect()}
    own = {f + "_total" if f + "_total" in exposed else f for f in families if f.startswith("faramesh_")}
    own = {f + "_info" if f + "_info" in exposed and f not in documented else f for f in own}
    assert own <= documented, own - documented
    for family in families - {f for f in families if f.startswith("faramesh_")}:
        assert re.search(rf"`{family}(_total|_\*)?`", DOC) or family.startswith("python_gc"), family

"""docs/permits.md stays true: its routes, commands, options, settings and exception
names exist, and its flow example compiles."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

import faramesh.permit
from faramesh.cli.main import main
from faramesh.config import SETTINGS
from faramesh.server.app import create_app

DOC = (Path(__file__).resolve().parents[2] / "docs" / "permits.md").read_text(encoding="utf-8")


def test_documented_routes_exist() -> None:
    def shape(path: str) -> str:
        return re.sub(r"\{[^}]*\}", "{}", path)

    paths = {shape(p) for p in create_app().openapi()["paths"]}
    documented = set(re.findall(r"(?:GET|POST) (/v1/[\w/{}]+)", DOC))
    assert {"/v1/permits/keys", "/v1/actions/{id}/start", "/v1/actions/{id}/reconcile"} <= documented
    for path in documented:
        assert shape(path) in paths, path


def test_documented_commands_options_and_settings_exist() -> None:
    runner = CliRunner()
    for words in re.findall(r"`faramesh ((?:[a-z-]+ ?)+)", DOC):
        command = words.split()[:2] if words.startswith("permits") else words.split()[:1]
        result = runner.invoke(main, [*command, "--help"])
        assert result.exit_code == 0, words
    assert "--new-secret" in runner.invoke(main, ["permits", "rotate-key", "--help"]).output
    serve_help = runner.invoke(main, ["serve", "--help"]).output
    for option in re.findall(r"`(--[a-z-]+)`", DOC):
        assert option in serve_help or option == "--new-secret", option
    assert set(re.findall(r"\bFARAMESH_[A-Z_]+\b", DOC)) <= {s.env for s in SETTINGS}


def test_documented_exceptions_and_functions_are_public() -> None:
    names = set(re.findall(r"`(Permit[A-Za-z]+)`", DOC)) | {"verify_permit", "verify_action", "read_permit"}
    assert names <= set(faramesh.permit.__all__), names - set(faramesh.permit.__all__)


def test_the_flow_example_compiles() -> None:
    [flow] = [b for b in re.findall(r"```python\n(.*?)```", DOC, re.S) if "start_action" in b]
    compile(flow, "docs/permits.md", "exec")

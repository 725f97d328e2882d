"""docs/approvals.md stays true: its config files load, its verification code checks
real signatures, and the options and endpoints it names exist."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from faramesh.cli.main import main
from faramesh.notify.slack import load_slack_config
from faramesh.notify.webhooks import EVENT_TYPES, load_webhook_file, signature_header
from faramesh.server.app import create_app

DOC = Path(__file__).resolve().parents[2] / "docs" / "approvals.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_webhooks_and_slack_files_in_the_doc_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [b for b in blocks("yaml") if "webhooks:" in b or "signing_secret:" in b]
    assert len(files) == 2
    hooks_file = tmp_path / "webhooks.yaml"
    hooks_file.write_text(files[0])
    hooks = load_webhook_file(hooks_file)
    assert [h.format for h in hooks] == ["json", "slack", "teams"]
    slack_file = tmp_path / "slack.yaml"
    slack_file.write_text(files[1])
    monkeypatch.setenv("FARAMESH_SLACK_BOT_TOKEN", "xoxb-doc")
    config = load_slack_config(slack_file)
    assert len(config.users) == 2 and config.app and config.escalation_channels == {"finance-leads": "C0FINLEADS"}


def test_policy_snippets_in_the_doc_are_valid_rules() -> None:
    from faramesh.policy import Policy

    rules = [b for b in blocks("yaml") if "require_approval" in b]
    assert rules
    for rule in rules:
        Policy.from_yaml("rules:\n" + rule if not rule.lstrip().startswith("rules") else rule)


def test_the_standalone_verification_code_accepts_real_signatures() -> None:
    [code] = [b for b in blocks("python") if "def verify(" in b]
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/approvals.md", "exec"), namespace)
    verify = namespace["verify"]
    body = b'{"type":"action.approved","seq":7}'
    header = signature_header("whsec_doc", body)
    assert verify("whsec_doc", header, body)  # type: ignore[operator]
    assert not verify("whsec_other", header, body)  # type: ignore[operator]
    assert not verify("whsec_doc", header, body + b" ")  # type: ignore[operator]
    stale = signature_header("whsec_doc", body, timestamp=int(time.time()) - 600)
    assert not verify("whsec_doc", stale, body)  # type: ignore[operator]


def test_documented_events_commands_and_routes_exist() -> None:
    text = DOC.read_text(encoding="utf-8")
    for event in EVENT_TYPES:
        assert f"`{event}`" in text, event
    runner = CliRunner()
    assert "--params" in runner.invoke(main, ["approve", "--help"]).output
    assert "--reason" in runner.invoke(main, ["deny", "--help"]).output
    serve_help = runner.invoke(main, ["serve", "--help"]).output
    for option in ("--webhooks", "--slack-config", "--webhook-retry-base", "--webhook-timeout", "--approval-timeout"):
        assert option in serve_help and option in text, option

    def shape(path: str) -> str:
        return re.sub(r"\{[^}]*\}", "{}", path)

    paths = {shape(path) for path in create_app().openapi()["paths"]}
    documented = re.findall(r"(?:GET|POST|DELETE)\s+(/v1/[\w/{}]+)", text)
    assert len(documented) >= 8
    for path in documented:
        assert shape(path) in paths, path
    assert "/v1/integrations/slack/interactions" in paths and "/v1/events" in paths


def test_doc_yaml_blocks_parse() -> None:
    for block in blocks("yaml"):
        yaml.safe_load(block)

"""The settings table (faramesh.config.SETTINGS) and `faramesh serve` agree."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from faramesh.cli.common import Count, Seconds
from faramesh.cli.serve import serve
from faramesh.config import SETTINGS, Setting, Settings

# Settings only read from the environment, on purpose: a secret does not belong on a command line.
ENV_ONLY = {"secret_key", "oidc_client_secret"}


def _options() -> dict[str, click.Option]:
    """serve's options by flag name without dashes, e.g. "max_body_bytes"."""
    found = {}
    for param in serve.params:
        if isinstance(param, click.Option):
            for flag in param.opts:
                found[flag.lstrip("-").replace("-", "_")] = param
    return found


def test_every_setting_is_a_serve_option_with_its_env_variable() -> None:
    options = _options()
    for setting in SETTINGS:
        if setting.name in ENV_ONLY:
            continue
        assert setting.name in options, f"serve has no --{setting.name.replace('_', '-')}"
        envvar = options[setting.name].envvar
        envvars = [envvar] if isinstance(envvar, str) else list(envvar or [])
        assert setting.env in envvars, f"--{setting.name.replace('_', '-')} does not read {setting.env}"


def test_every_setting_is_a_settings_field_and_reads_its_env_variable() -> None:
    fields = set(Settings.__dataclass_fields__)
    for setting in SETTINGS:
        assert setting.name in fields
    within = {s.name: int(s.minimum or 0) + 7 for s in SETTINGS if s.type is int}
    parsed = Settings.from_env({s.env: str(within[s.name]) for s in SETTINGS if s.type is int})
    for name, value in within.items():
        assert getattr(parsed, name) == value, name


def test_every_setting_is_visible_in_serve_help_with_its_meaning() -> None:
    from click.testing import CliRunner

    from faramesh.cli.main import main

    result = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for setting in SETTINGS:
        assert setting.env in text, f"serve --help does not mention {setting.env}"
    for name, option in _options().items():
        if option.envvar:
            assert option.help, f"--{name.replace('_', '-')} has no help text"


def test_every_setting_is_a_row_of_the_deployment_guide_settings_table() -> None:
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "deployment.md").read_text()
    section = doc.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(FARAMESH_\w+)` \| `([^`]+)` \|", section, re.M))
    assert set(rows) == {s.env for s in SETTINGS}
    for setting in SETTINGS:
        flag = "--" + setting.name.replace("_", "-")
        assert rows[setting.env] == ("environment only" if setting.name in ENV_ONLY else flag), setting.env


SECONDS = [s for s in SETTINGS if s.type is float]
COUNTS = [s for s in SETTINGS if s.type is int]


def test_the_seconds_settings_have_a_minimum_and_serve_applies_it() -> None:
    assert all(s.minimum is not None for s in SECONDS)
    options = _options()
    for setting in SECONDS:
        kind = options[setting.name].type
        assert isinstance(kind, Seconds) and kind.minimum == setting.minimum, setting.name


def _refused_by_name(setting: Setting, bad: str) -> None:
    """Refused from the environment naming the variable, and by serve (exit 2) naming the
    option, before anything is opened or created."""
    with pytest.raises(ValueError, match=setting.env):
        Settings.from_env({setting.env: bad})
    option = f"--{setting.name.replace('_', '-')}"
    result = CliRunner().invoke(serve, [option, bad])
    assert result.exit_code == 2 and option in result.output, (setting.name, bad, result.output)
    assert "Traceback" not in result.output and "admin key" not in result.output


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "1e999", "-1", "abc", "5m"])
def test_a_seconds_setting_that_is_not_a_finite_number_in_range_is_refused_by_name(bad: str) -> None:
    """float() reads 'nan' and 'inf', and click's FloatRange lets them through its bounds:
    a webhook timeout of nan seconds, a policy watch every inf seconds."""
    for setting in SECONDS:
        _refused_by_name(setting, bad)


def test_a_seconds_setting_in_range_is_read() -> None:
    env = {s.env: str(s.minimum + 0.5) for s in SECONDS}
    parsed = Settings.from_env(env)
    for setting in SECONDS:
        assert getattr(parsed, setting.name) == setting.minimum + 0.5


def test_the_mcp_proxy_refuses_a_timeout_that_is_not_a_finite_number() -> None:
    from faramesh.cli.main import main

    for option in ("--timeout", "--progress-interval"):
        result = CliRunner().invoke(main, ["mcp", "proxy", option, "nan", "--", "true"])
        assert result.exit_code == 2 and option in result.output, result.output


def test_every_whole_number_setting_has_a_range_that_serve_and_the_environment_apply() -> None:
    """--port -5 printed the new admin key and then failed in uvicorn; --port 70000 and a
    body limit of 0 started servers that could not be reached or refused every request;
    --max-body-bytes -1 ended in a traceback."""
    options = _options()
    for setting in COUNTS:
        assert setting.minimum is not None, setting.name
        kind = options[setting.name].type
        assert isinstance(kind, Count) and (kind.minimum, kind.maximum) == (setting.minimum, setting.maximum)
        outside = [str(int(setting.minimum) - 1), "abc", "1.5"]
        if setting.maximum is not None:
            outside.append(str(setting.maximum + 1))
        for bad in outside:
            _refused_by_name(setting, bad)


def test_a_server_that_refuses_every_request_is_not_started() -> None:
    for option in ("--max-body-bytes", "--max-header-bytes"):
        result = CliRunner().invoke(serve, [option, "100"])
        assert result.exit_code == 2 and "1024 or more" in result.output, result.output

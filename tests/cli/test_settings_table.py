"""The settings table (faramesh.config.SETTINGS) and `faramesh serve` agree."""

from __future__ import annotations

import click

from faramesh.cli.serve import serve
from faramesh.config import SETTINGS, Settings

# Settings only read from the environment, on purpose: a secret does not belong on a command line.
ENV_ONLY = {"secret_key"}


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
    env = {s.env: "7" for s in SETTINGS if s.type is int}
    parsed = Settings.from_env(env)
    for setting in SETTINGS:
        if setting.type is int:
            assert getattr(parsed, setting.name) == 7, setting.name

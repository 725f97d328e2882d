"""deploy/faramesh.service, checked by systemd's own tools: `systemd-analyze verify`
(syntax, every key known, the command executable) and `systemd-analyze security`
(the hardening score), plus the settings it sets."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faramesh.config import SETTINGS, Settings
from tests.conftest import IN_CI
from tests.deploy.support import DEPLOY

UNIT = DEPLOY / "faramesh.service"
MAX_EXPOSURE = 2.0  # systemd-analyze's scale: 0 (locked down) to 10; under 2 reads "OK"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found:
        return found
    message = "systemd-analyze is not installed (apt-get install -y systemd)"
    if IN_CI:
        pytest.fail(message + "; the unit checks are required under CI=true")
    pytest.skip(message)


def unit_with_real_command(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's faramesh (verify checks it exists)."""
    copy = tmp_path / UNIT.name
    faramesh = Path(sys.executable).parent / "faramesh"
    copy.write_text(UNIT.read_text().replace("/opt/faramesh/bin/faramesh", str(faramesh)))
    return copy


def service_section() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    tool = systemd_analyze()
    checked = subprocess.run([tool, "verify", str(unit_with_real_command(tmp_path))], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.strip() == "", checked.stderr  # no unknown key, no warning


def test_hardening_exposure_is_low(tmp_path: Path) -> None:
    tool = systemd_analyze()
    report = subprocess.run(
        [tool, "security", "--offline=yes", str(unit_with_real_command(tmp_path))], capture_output=True, text=True
    )
    match = re.search(r"Overall exposure level for faramesh\.service: (\d+\.\d+)", report.stdout + report.stderr)
    assert match, report.stdout + report.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, report.stdout


def test_unit_runs_as_a_dynamic_user_reloads_on_sighup_and_sets_only_settings() -> None:
    service = service_section()
    assert service["DynamicUser"] == ["yes"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["StateDirectory"] == ["faramesh"] and service["WorkingDirectory"] == ["/var/lib/faramesh"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # the server reloads its policy on SIGHUP
    assert service["ExecStart"] == ["/opt/faramesh/bin/faramesh serve"]
    env = dict(word.split("=", 1) for line in service["Environment"] for word in line.split())
    assert set(env) <= {s.env for s in SETTINGS}
    settings = Settings.from_env(env)
    # The only place ProtectSystem=strict lets it write is its state directory.
    assert settings.database_url == "sqlite:////var/lib/faramesh/faramesh.db"
    assert settings.host == "127.0.0.1"
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(UNIT.read_text())
    assert parser["Install"]["WantedBy"] == "multi-user.target"

"""The published faramesh-sdk 0.3.3 client, in its own virtual environment, against our server."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import pytest

from tests.conftest import IN_CI, ServerProcess

VERSION = "0.3.3"
SCRIPT = Path(__file__).parent / "faramesh_sdk_033_script.py"
# sseclient-py provides the `sseclient` module its stream_events needs.
REQUIREMENTS = [f"faramesh-sdk=={VERSION}", "sseclient-py>=1.8"]


def _venv_python(root: Path) -> Path:
    return root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@pytest.fixture(scope="module")
def published_sdk() -> Path:
    """A cached virtual environment with only the published client installed."""
    tag = f"faramesh-sdk-{VERSION}-py{sys.version_info.major}{sys.version_info.minor}"
    root = Path(tempfile.gettempdir()) / "faramesh-test-venvs" / tag
    python = _venv_python(root)
    marker = root / ".installed"
    if not marker.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(root)
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if install.returncode != 0:
            message = f"cannot install faramesh-sdk {VERSION}: {install.stderr[-2000:]}"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        marker.write_text(" ".join(REQUIREMENTS))
    return python


def test_published_client_works_unchanged(published_sdk: Path, gov_server: ServerProcess, tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "FARAMESH_BASE_URL": gov_server.url,
        "FARAMESH_TOKEN": gov_server.create_key("agent"),
        "COMPAT_APPROVER_TOKEN": gov_server.create_key("approver"),
    }
    run = subprocess.run(
        [str(published_sdk), "-I", str(SCRIPT)],  # -I: only the venv's packages, not ours
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    steps = [line.split()[1] for line in run.stdout.splitlines() if line.startswith("ok ")]
    assert steps == [
        "env-config",
        "submit-allowed",
        "submit-denied-raises",
        "submit-pending",
        "get-and-list",
        "approve-and-deny",
        "wait-for-completion",
        "gate",
        "replay-decision",
        "replay-action",
        "errors",
        "legacy-class",
        "stream-events",
    ]

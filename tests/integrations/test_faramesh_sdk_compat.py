"""The published faramesh-sdk 0.3.3 client, in its own virtual environment, against our server."""

from __future__ import annotations

import contextlib
import os
import shutil
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
    """A cached virtual environment with only the published client installed.

    The cache is shared by every test run on the machine, and runs may overlap: it is
    built in a directory of its own, then renamed into place in one step, so no run
    uses a half-built one or clears one another run is using.
    """
    tag = f"faramesh-sdk-{VERSION}-py{sys.version_info.major}{sys.version_info.minor}"
    cache = Path(tempfile.gettempdir()) / "faramesh-test-venvs"
    root = cache / tag
    if not (root / ".installed").exists():
        cache.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f"{tag}.building-", dir=cache))
        try:
            venv.EnvBuilder(with_pip=True).create(building)
            install = subprocess.run(
                [
                    str(_venv_python(building)),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    *REQUIREMENTS,
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if install.returncode != 0:
                message = f"cannot install faramesh-sdk {VERSION}: {install.stderr[-2000:]}"
                if IN_CI:
                    pytest.fail(message)
                pytest.skip(message)
            (building / ".installed").write_text(" ".join(REQUIREMENTS))
            if root.exists() and not (root / ".installed").exists():
                shutil.rmtree(root, ignore_errors=True)  # left half-built by an older run
            with contextlib.suppress(OSError):  # another run got there first: use its copy
                building.rename(root)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return _venv_python(root)


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

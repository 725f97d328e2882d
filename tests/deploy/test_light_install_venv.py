"""`pip install faramesh` into a clean virtual environment, for real: the client works, the
server stack is not there, and `faramesh serve` names the extra to install."""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from tests.deploy.support import ROOT, clean_env

SERVER_DISTRIBUTIONS = {"fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "jinja2", "prometheus-client"}


@pytest.mark.timeout(600)
def test_base_install_is_the_client_only(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    env = clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1")
    install = subprocess.run(
        [str(bin_dir / "pip"), "install", "-q", str(source)], env=env, capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr[-3000:]

    listed = subprocess.run(
        [str(bin_dir / "pip"), "list", "--format=freeze"], env=env, capture_output=True, text=True, check=True
    )
    installed = {line.split("==")[0].lower().replace("_", "-") for line in listed.stdout.splitlines()}
    assert "faramesh" in installed
    assert installed.isdisjoint(SERVER_DISTRIBUTIONS), installed & SERVER_DISTRIBUTIONS

    client = subprocess.run(
        [str(bin_dir / "python"), "-c", "from faramesh import govern, ExecutionGovernorClient; import faramesh.sdk"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert client.returncode == 0, client.stderr
    starter = source / "src" / "faramesh" / "policy" / "starter.yaml"
    validated = subprocess.run(
        [str(bin_dir / "faramesh"), "policy", "validate", str(starter)], env=env, capture_output=True, text=True
    )
    assert validated.returncode == 0, validated.stderr
    served = subprocess.run([str(bin_dir / "faramesh"), "serve"], env=env, capture_output=True, text=True)
    assert served.returncode == 2
    assert 'pip install "faramesh[server]"' in served.stderr

"""deploy/Dockerfile: its shape is checked as written, and its build stage's install
steps are run, as written, in a clean virtual environment (this machine has no Docker
daemon). The installed server is then started with the image's settings and its
HEALTHCHECK command is run against it."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from faramesh.config import SETTINGS, Settings
from tests.conftest import free_port
from tests.deploy.support import DEPLOY, ROOT, Stage, clean_env, exec_form, parse_dockerfile

DOCKERFILE = DEPLOY / "Dockerfile"


def stages() -> tuple[dict[str, str], Stage, Stage]:
    global_args, found = parse_dockerfile(DOCKERFILE)
    assert [s.name for s in found] == ["build", "runtime"]
    return global_args, found[0], found[1]


def healthcheck(runtime: Stage) -> list[str]:
    [check] = runtime.all("HEALTHCHECK")
    return exec_form(check.args.split(" CMD ", 1)[1])


def test_multi_stage_slim_non_root_with_a_readiness_healthcheck() -> None:
    global_args, build, runtime = stages()
    assert build.base == runtime.base == "${PYTHON_IMAGE}"
    assert global_args["PYTHON_IMAGE"].startswith("python:3.") and global_args["PYTHON_IMAGE"].endswith("-slim")
    # The runtime stage takes only the built environment from the build stage: no source, no compiler.
    copies = runtime.all("COPY")
    assert [c.args for c in copies] == [f"--from=build {build.arg('VENV')} {build.arg('VENV')}"]
    [user] = runtime.all("USER")
    assert user.args not in ("root", "0")
    [useradd] = runtime.all("RUN")
    assert "useradd --system" in useradd.args and useradd.args.split()[-1] == user.args
    check = healthcheck(runtime)
    assert check[:2] == ["python", "-c"] and "/ready" in check[2]
    assert exec_form(runtime.all("CMD")[0].args) == ["faramesh", "serve"]
    env = runtime.env()
    settings = {s.env for s in SETTINGS}
    assert {k for k in env if k.startswith("FARAMESH_")} <= settings
    parsed = Settings.from_env({k: v for k, v in env.items() if k in settings})
    assert (parsed.host, parsed.port, parsed.log_format) == ("0.0.0.0", 8000, "json")
    assert [e.args for e in runtime.all("EXPOSE")] == [str(parsed.port)]


def copy_context(build: Stage, workdir: Path) -> None:
    """The build stage's COPY steps, from the repository with Dockerfile.dockerignore applied."""
    ignored = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith("!") and line.strip() != "*"
    ]

    def ignore(directory: str, names: list[str]) -> set[str]:
        relative = Path(directory).relative_to(ROOT)
        return {
            n
            for n in names
            if any(fnmatch.fnmatch(str(relative / n), p) or fnmatch.fnmatch(n, p.split("/")[-1]) for p in ignored)
        }

    for copy in build.all("COPY"):
        *sources, destination = copy.args.split()
        target = workdir / destination
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, target, ignore=ignore)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / source)


@pytest.mark.timeout(900)
def test_build_steps_install_a_server_that_passes_the_image_healthcheck(tmp_path: Path) -> None:
    _, build, runtime = stages()
    [workdir_instruction] = build.all("WORKDIR")
    workdir = tmp_path / workdir_instruction.args.lstrip("/")
    copy_context(build, workdir)
    assert (workdir / "src" / "faramesh" / "__init__.py").exists()
    assert not list(workdir.rglob("__pycache__"))
    venv = tmp_path / "venv"
    env = clean_env(**build.env(), VENV=str(venv))
    for step in build.all("RUN"):
        done = subprocess.run(["sh", "-ec", step.args], cwd=workdir, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"RUN {step.args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    python = str(venv / "bin" / "python")
    extras = subprocess.run(
        [python, "-c", "import psycopg, psycopg_pool, opentelemetry.sdk, fastapi_offline, uvicorn"],
        capture_output=True,
        text=True,
    )
    assert extras.returncode == 0, extras.stderr

    # Start it as the image does: its ENV (the database in a temporary directory) and its CMD.
    port = free_port()
    image_env = runtime.env()
    image_env.update(
        FARAMESH_PORT=str(port),
        FARAMESH_HOST="127.0.0.1",
        FARAMESH_DATABASE_URL=f"sqlite:///{tmp_path / 'data' / 'faramesh.db'}",
        PATH=f"{venv / 'bin'}:{clean_env()['PATH']}",
    )
    (tmp_path / "data").mkdir()
    command = exec_form(runtime.all("CMD")[0].args)
    server = subprocess.Popen(
        command, cwd=tmp_path / "data", env=clean_env(**image_env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server from the clean environment did not start"
            time.sleep(0.1)
        check = subprocess.run(healthcheck(runtime), env=clean_env(**image_env), capture_output=True, timeout=30)
        assert check.returncode == 0, check.stderr
        docs = httpx.get(f"http://127.0.0.1:{port}/docs/assets/swagger-ui-bundle.js", timeout=5)
        assert docs.status_code == 200 and len(docs.content) > 100_000
    finally:
        server.terminate()
        server.wait(timeout=20)
    # Stopped: the same check now fails, as Docker would see it.
    after = subprocess.run(healthcheck(runtime), env=clean_env(**image_env), capture_output=True, timeout=30)
    assert after.returncode != 0

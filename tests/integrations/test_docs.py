"""docs/integrations.md is checked: its policy loads and its examples run against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from faramesh.policy import Policy
from tests.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "integrations.md"
SDK_DOC = ROOT / "docs" / "sdk.md"
EXAMPLE = re.compile(r"<!-- docs-example: (?P<name>[\w-]+) -->\n```(?P<lang>\w*)\n(?P<body>.*?)```", re.DOTALL)


def examples() -> dict[str, str]:
    return {m["name"]: m["body"] for m in EXAMPLE.finditer(DOC.read_text(encoding="utf-8"))}


@pytest.fixture(scope="module")
def doc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("docs")
    policy = tmp / "policy.yaml"
    policy.write_text(examples()["policy"], encoding="utf-8")
    srv = ServerProcess(f"sqlite:///{tmp / 'faramesh.db'}", policy, cwd=tmp).start()
    yield srv
    srv.stop()


def run_example(name: str, server: ServerProcess, cwd: Path) -> str:
    script = cwd / f"{name}.py"
    script.write_text(examples()[name], encoding="utf-8")
    env = {
        **os.environ,
        "FARAMESH_URL": server.url,
        "FARAMESH_API_KEY": server.create_key("agent"),
        # The `faramesh` command of this environment, as after `pip install faramesh`.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    assert run.returncode == 0, f"{name} failed:\n{run.stdout}\n{run.stderr}"
    return run.stdout


def test_every_example_is_named_and_python_examples_compile() -> None:
    found = examples()
    assert set(found) == {"policy", "govern", "langchain", "openai-agents", "mcp-server", "mcp-client"}
    Policy.from_yaml(found["policy"])
    for name, body in found.items():
        if name != "policy":
            compile(body, f"docs/integrations.md:{name}", "exec")


def test_govern_example_runs(doc_server: ServerProcess, tmp_path: Path) -> None:
    out = run_example("govern", doc_server, tmp_path)
    assert out.splitlines() == ["{'refunded': 40, 'customer': 'cus_1'}", "denied: Agents may not delete users"]


def test_langchain_example_runs(doc_server: ServerProcess, tmp_path: Path) -> None:
    pytest.importorskip("langchain_core")
    lines = run_example("langchain", doc_server, tmp_path).splitlines()
    assert lines[0] == "success order A7: shipped"
    assert lines[1].startswith("error Not permitted by Faramesh: wipe_database.invoke denied: Never wipe the database")


def test_mcp_example_runs(doc_server: ServerProcess, tmp_path: Path) -> None:
    pytest.importorskip("mcp")
    (tmp_path / "demo_server.py").write_text(examples()["mcp-server"], encoding="utf-8")
    lines = run_example("mcp-client", doc_server, tmp_path).splitlines()
    assert lines[0] == "False 5"
    assert lines[1].startswith("True Not permitted by Faramesh: demo.delete_file.call denied")


def test_sdk_reference_names_every_public_client_method() -> None:
    from faramesh.sdk.client import AsyncExecutionGovernorClient, ExecutionGovernorClient

    text = SDK_DOC.read_text(encoding="utf-8")
    for cls in (ExecutionGovernorClient, AsyncExecutionGovernorClient):
        for name in dir(cls):
            if not name.startswith("_") and callable(getattr(cls, name)) and name not in ("close", "aclose"):
                assert f"`{name}(" in text, f"docs/sdk.md does not document {cls.__name__}.{name}"

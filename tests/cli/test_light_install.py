"""The light install (`pip install faramesh`, no extras): the client works without the server stack.

A fresh interpreter refuses to import anything that only `faramesh[server]` (or the
postgres and otel extras) brings, then uses the SDK, `govern`, the integrations' glue,
the CLI's client commands against a real server, and the offline policy tools; the
commands that need the server stack exit 2 naming the install command.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from tests.conftest import ServerProcess

# Top-level modules that only the server, postgres and otel extras install.
SERVER_ONLY = (
    "fastapi",
    "fastapi_offline",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "watchfiles",
    "websockets",
    "sqlalchemy",
    "alembic",
    "mako",
    "jinja2",
    "itsdangerous",
    "multipart",
    "python_multipart",
    "prometheus_client",
    "pygments",
    "psycopg",
    "psycopg_pool",
    "opentelemetry",
    "authlib",
)

CHILD = textwrap.dedent(
    """
    import importlib, importlib.abc, io, json, sys
    from contextlib import redirect_stderr, redirect_stdout

    BLOCKED = set(json.loads(sys.argv[1]))

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    url, agent_key, approver_key, starter = sys.argv[2:6]
    out = {}

    import faramesh
    from faramesh import govern, ActionDenied, ExecutionGovernorClient, AsyncExecutionGovernorClient
    import faramesh.sdk, faramesh.integrations, faramesh.policy, faramesh.policy.tooling
    from faramesh.cli.main import main

    client = ExecutionGovernorClient(base_url=url, api_key=agent_key)

    @govern(tool="refund", operation="process", client=client)
    def refund(amount):
        return {"refunded": amount}

    out["govern"] = refund(amount=5)
    out["submitted"] = client.submit_action("user_management", "delete", {"id": 1})["status"]

    def cli(*args):
        stdout, stderr = io.StringIO(), io.StringIO()
        with redirect_stdout(stdout), redirect_stderr(stderr):
            try:
                main(list(args), prog_name="faramesh")
                code = 0
            except SystemExit as exc:
                code = exc.code or 0
        return {"code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}

    client_args = ["--url", url, "--api-key", approver_key]
    out["actions_list"] = cli("actions", "list", "--json", *client_args)
    out["validate"] = cli("policy", "validate", starter)
    out["explain"] = cli("policy", "explain", starter, "--tool", "refund", "--operation", "process",
                         "--params", '{"amount": 500}')
    out["packs"] = cli("packs", "list")
    out["serve"] = cli("serve", "--port", "9")
    out["keys"] = cli("keys", "list")
    out["audit"] = cli("audit", "verify")
    out["leaked"] = sorted({m.split(".")[0] for m in sys.modules} & BLOCKED)
    print(json.dumps(out))
    """
)


def test_client_side_runs_without_the_server_stack(server: ServerProcess, tmp_path: Path) -> None:
    import faramesh.policy

    starter = Path(faramesh.policy.__file__).parent / "starter.yaml"
    agent, approver = server.create_key("agent"), server.create_key("approver")
    script = tmp_path / "light_client.py"
    script.write_text(CHILD)
    run = subprocess.run(
        [sys.executable, str(script), json.dumps(SERVER_ONLY), server.url, agent, approver, str(starter)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["leaked"] == []
    assert out["govern"] == {"refunded": 5}
    assert out["submitted"] == "denied"
    listed = out["actions_list"]
    assert listed["code"] == 0, listed
    assert {a["tool"] for a in json.loads(listed["stdout"])} >= {"refund", "user_management"}
    assert out["validate"]["code"] == 0 and "valid" in out["validate"]["stdout"]
    assert out["explain"]["code"] == 0 and "large-refunds" in out["explain"]["stdout"]
    assert out["packs"]["code"] == 0 and "payments" in out["packs"]["stdout"]
    for command in ("serve", "keys", "audit"):
        result = out[command]
        assert result["code"] == 2, (command, result)
        assert 'pip install "faramesh[server]"' in result["stderr"], (command, result)
        assert "fastapi" in result["stderr"] and "sqlalchemy" in result["stderr"]


def test_the_base_install_declares_no_server_package() -> None:
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}

    base = names(project["dependencies"])
    server = names(project["optional-dependencies"]["server"])
    assert {"fastapi", "uvicorn", "sqlalchemy", "alembic", "jinja2", "prometheus-client"} <= server
    assert base.isdisjoint(server), base & server
    # joserfc and cryptography: faramesh.permit verifies permits where the tool runs.
    assert base <= {"httpx", "click", "pydantic", "pyyaml", "orjson", "tzdata", "joserfc", "cryptography"}
    # The extras that only make sense with a server bring it along.
    for extra in ("postgres", "otel"):
        assert "faramesh[server]" in project["optional-dependencies"][extra]

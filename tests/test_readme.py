"""The README's quickstart, executed, so the docs cannot drift from the product."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import ServerProcess, auth, faramesh_cmd

README = Path(__file__).parent.parent / "README.md"


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), re.S)


def test_readme_python_quickstart_runs(start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server(policy=None)  # the starter policy, as in the README
    [block] = [b for b in code_blocks("python") if "refund_customer(150" in b]
    agent_key = server.create_key("agent", name="billing-bot")
    approver_key = server.create_key("approver", name="alice")

    def approve_pending() -> None:
        for _ in range(600):
            pending = httpx.get(
                server.url + "/v1/actions", params={"status": "pending_approval"}, headers=auth(approver_key)
            ).json()["actions"]
            if pending:
                env = {**os.environ, "FARAMESH_URL": server.url, "FARAMESH_API_KEY": approver_key}
                subprocess.run(
                    faramesh_cmd("approve", pending[0]["id"], "--reason", "order checked"),
                    env=env,
                    check=True,
                    capture_output=True,
                    timeout=60,
                )
                return
            time.sleep(0.05)

    thread = threading.Thread(target=approve_pending, daemon=True)
    thread.start()
    env = {**os.environ, "FARAMESH_URL": server.url, "FARAMESH_API_KEY": agent_key}
    out = subprocess.run([sys.executable, "-c", block], env=env, capture_output=True, text=True, timeout=120)
    thread.join(timeout=10)
    assert out.returncode == 0, out.stderr
    assert "{'refund_id': 're_cus_123', 'amount': 50}" in out.stdout
    assert "Refund needs approval. Action ID:" in out.stdout
    assert "{'refund_id': 're_cus_456', 'amount': 150}" in out.stdout
    actions = httpx.get(server.url + "/v1/actions", headers=auth(approver_key)).json()["actions"]
    assert sorted(a["status"] for a in actions) == ["succeeded", "succeeded"]


def test_readme_policy_block_is_the_starter_policy() -> None:
    from faramesh.policy import Policy, load_starter_policy

    [block] = [b for b in code_blocks("yaml") if "Large refunds need approval" in b]
    readme_policy = Policy.from_yaml(block)
    starter = load_starter_policy()
    assert readme_policy.hash == starter.hash  # all of its rules, not a part
    assert [r["id"] for r in readme_policy.to_dict()["rules"]] == [r["id"] for r in starter.to_dict()["rules"]]
    assert f"contains these {len(starter.rules)} rules" in README.read_text().replace("four", "4")


def test_readme_quickstart_keys_and_curl_flow_run(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The quickstart's key commands, run beside the server's ./faramesh.db, then the whole
    cURL flow (submit, status, approve, wait, result) exactly as written."""
    server: ServerProcess = start_server(policy=None, database_url=f"sqlite:///{tmp_path / 'faramesh.db'}")
    [keys] = [b for b in code_blocks("bash") if "keys create --role agent" in b]
    [flow] = [b for b in code_blocks("bash") if "/result" in b and "curl" in b]
    faramesh = str(Path(sys.executable).parent / "faramesh")
    script = (keys + flow).replace(".venv/bin/faramesh", faramesh).replace("http://127.0.0.1:8000", server.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARAMESH_")}
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert '"status":"pending_approval"' in out.stdout  # step 2
    assert out.stdout.rstrip().endswith("}") and '"status":"succeeded"' in out.stdout.splitlines()[-1]
    [action] = httpx.get(server.url + "/v1/actions", headers=auth(server.admin_key or "")).json()["actions"]
    assert (action["status"], action["decided_by"] is not None, action["result"]) == (
        "succeeded",
        True,
        {"refund_id": "re_1"},
    )


def test_readme_names_the_same_test_command_as_ci() -> None:
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    [command] = [line for line in ci.splitlines() if line.startswith("python3 -m venv")]
    assert command in README.read_text()

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


def test_readme_policy_block_is_the_starter_policys_refund_rules() -> None:
    from faramesh.policy import Policy, load_starter_policy

    [block] = [b for b in code_blocks("yaml") if "Large refunds need approval" in b]
    readme_policy = Policy.from_yaml(block)
    starter = load_starter_policy()
    for amount, effect in ((50, "allow"), (100, "allow"), (150, "require_approval")):
        for policy in (readme_policy, starter):
            d = policy.evaluate(tool="refund", operation="process", params={"amount": amount}, context={})
            assert d.effect.value == effect


def test_readme_names_the_same_test_command_as_ci() -> None:
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    [command] = [line for line in ci.splitlines() if line.startswith("python3 -m venv")]
    assert command in README.read_text()

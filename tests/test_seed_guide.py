"""The "Govern Your Own Tool" guide, run as written against a real server."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest

from faramesh.sdk.client import ExecutionGovernorClient
from tests.conftest import ServerProcess, auth, faramesh_cmd

REFUNDS: list[tuple[float, str]] = []
DELETED: list[str] = []


def your_refund_logic(amount: float, customer_id: str) -> dict[str, Any]:
    REFUNDS.append((amount, customer_id))
    return {"refund_id": f"re_{len(REFUNDS)}", "amount": amount}


def your_delete_logic(user_id: str) -> None:
    DELETED.append(user_id)


def make_seed_functions(client: ExecutionGovernorClient) -> dict[str, Any]:
    """The guide's two functions, copied verbatim (only indented into this factory)."""

    def refund_customer(amount: float, customer_id: str) -> dict:
        # 1. Submit to Faramesh
        action = client.submit_action(
            tool="refund",
            operation="process",
            params={"amount": amount, "customer_id": customer_id},
            context={"agent_id": "billing-bot"},
        )

        # 2. Check status
        if action["status"] == "denied":
            raise PermissionError(f"Refund denied: {action.get('reason')}")

        if action["status"] == "pending_approval":
            print(f"Refund needs approval. Action ID: {action['id']}")
            print("Open the dashboard to approve or deny.")
            # Option: poll until approved, or exit and let user approve
            import time

            for _ in range(150):  # 5 minutes
                time.sleep(2)
                updated = client.get_action(action["id"])
                if updated["status"] in ("approved", "allowed"):
                    break
                if updated["status"] == "denied":
                    raise PermissionError("Refund was denied")
            else:
                raise TimeoutError("Approval timeout")

        # 3. Execute only if allowed
        if action["status"] not in ("allowed", "approved"):
            raise PermissionError(f"Refund not approved. Status: {action['status']}")

        # 4. Do the actual refund
        try:
            result = your_refund_logic(amount, customer_id)
            client.report_result(action["id"], success=True, result=result)
            return result
        except Exception as e:
            client.report_result(action["id"], success=False, error=str(e))
            raise

    def delete_user(user_id: str) -> bool:
        action = client.submit_action(
            tool="user_management", operation="delete", params={"user_id": user_id}, context={"agent_id": "admin-bot"}
        )

        if action["status"] == "denied":
            raise PermissionError(f"Delete denied: {action.get('reason')}")

        if action["status"] == "pending_approval":
            print(f"Delete needs approval: {action['id']}")
            # Same polling logic as above...

        # Execute deletion
        try:
            your_delete_logic(user_id)
            client.report_result(action["id"], success=True)
            return True
        except Exception as e:
            client.report_result(action["id"], success=False, error=str(e))
            raise

    return {"refund_customer": refund_customer, "delete_user": delete_user}


def corrected_refund_customer(client: ExecutionGovernorClient, amount: float, customer_id: str) -> dict:
    """The README's version: wait with wait_for_decision and use the action it returns."""
    action = client.submit_action(
        tool="refund",
        operation="process",
        params={"amount": amount, "customer_id": customer_id},
        context={"agent_id": "billing-bot"},
    )
    if action["status"] == "pending_approval":
        action = client.wait_for_decision(action["id"], timeout=60)
    if action["status"] not in ("allowed", "approved"):
        raise PermissionError(f"Refund not approved: {action['status']}: {action.get('reason')}")
    try:
        result = your_refund_logic(amount, customer_id)
        client.report_result(action["id"], success=True, result=result)
        return result
    except Exception as e:
        client.report_result(action["id"], success=False, error=str(e))
        raise


def approve_from_cli_when_pending(server: ServerProcess, approver_key: str, admin_key: str) -> threading.Thread:
    """Another process approves: find the pending refund, run `faramesh approve ID`."""

    def run() -> None:
        for _ in range(400):
            r = httpx.get(server.url + "/v1/actions", params={"status": "pending_approval"}, headers=auth(admin_key))
            pending = r.json()["actions"]
            if pending:
                env = {**os.environ, "FARAMESH_URL": server.url, "FARAMESH_API_KEY": approver_key}
                out = subprocess.run(
                    faramesh_cmd("approve", pending[0]["id"], "--reason", "checked the order"),
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert out.returncode == 0, out.stderr
                return
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def guide_client(server: ServerProcess) -> ExecutionGovernorClient:
    agent_key = server.create_key("agent")
    return ExecutionGovernorClient(base_url=server.url, api_key=agent_key)


def test_small_refund_is_allowed_executed_and_reported(
    server: ServerProcess, guide_client: ExecutionGovernorClient
) -> None:
    refund_customer = make_seed_functions(guide_client)["refund_customer"]
    before = len(REFUNDS)
    result = refund_customer(50, "cus_small")
    assert REFUNDS[before:] == [(50, "cus_small")]
    listed = guide_client.list_actions(tool="refund")["actions"]
    action = next(a for a in listed if a["params"]["customer_id"] == "cus_small")
    assert action["status"] == "succeeded"
    assert action["result"] == result
    assert action["decision"] == "allow" and action["reason"] == "Small refunds allowed"
    assert action["agent_id"] == "billing-bot"


def test_large_refund_waits_for_cli_approval_then_succeeds(
    server: ServerProcess, guide_client: ExecutionGovernorClient
) -> None:
    approver = server.create_key("approver")
    assert server.admin_key
    thread = approve_from_cli_when_pending(server, approver, server.admin_key)
    before = len(REFUNDS)
    result = corrected_refund_customer(guide_client, 150, "cus_large")
    thread.join(timeout=30)
    assert REFUNDS[before:] == [(150, "cus_large")]
    action = next(
        a for a in guide_client.list_actions(tool="refund")["actions"] if a["params"]["customer_id"] == "cus_large"
    )
    assert action["status"] == "succeeded"
    assert action["result"] == result
    assert action["decision"] == "require_approval"
    assert action["decided_by"] and action["decision_reason"] == "checked the order"


def test_seed_polling_loop_trap_refuses_an_approved_refund(
    server: ServerProcess, guide_client: ExecutionGovernorClient
) -> None:
    """The guide's loop breaks on approval but then checks the stale `action`: documented in the README."""
    refund_customer = make_seed_functions(guide_client)["refund_customer"]
    approver = server.create_key("approver")
    assert server.admin_key
    thread = approve_from_cli_when_pending(server, approver, server.admin_key)
    before = len(REFUNDS)
    with pytest.raises(PermissionError, match=r"Refund not approved\. Status: pending_approval"):
        refund_customer(175, "cus_trap")
    thread.join(timeout=30)
    assert REFUNDS[before:] == []


def test_delete_example_is_denied_by_rule(server: ServerProcess, guide_client: ExecutionGovernorClient) -> None:
    delete_user = make_seed_functions(guide_client)["delete_user"]
    with pytest.raises(PermissionError, match="Delete denied: Agents may not delete users"):
        delete_user("user_42")
    assert "user_42" not in DELETED


CURL_SUBMIT = """ACTION=$(curl -X POST $FARAMESH_URL/v1/actions \\
  -H "Authorization: Bearer $API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{"tool":"refund","operation":"process","params":{"amount":150},"context":{"agent_id":"billing-bot"}}')
echo "$ACTION"
"""

CURL_RESULT = """curl -X POST $FARAMESH_URL/v1/actions/$ACTION_ID/result \\
  -H "Authorization: Bearer $API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{"success":true,"result":{"refund_id":"re_curl"}}'
"""


def test_seed_curl_calls(server: ServerProcess) -> None:
    import json

    api_key = server.create_key("agent")
    env = {**os.environ, "FARAMESH_URL": server.url, "API_KEY": api_key}
    out = subprocess.run(["bash", "-c", CURL_SUBMIT], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    action = json.loads(out.stdout)
    assert action["status"] == "pending_approval"
    assert action["reason"] == "Large refunds need approval"
    assert action["risk_level"] == "high"

    env["ACTION_ID"] = action["id"]
    early = subprocess.run(["bash", "-c", CURL_RESULT], env=env, capture_output=True, text=True, timeout=30)
    assert json.loads(early.stdout)["error"]["code"] == "invalid_transition"

    approver = server.create_key("approver")
    r = httpx.post(f"{server.url}/v1/actions/{action['id']}/approve", json={"reason": "ok"}, headers=auth(approver))
    assert r.status_code == 200 and r.json()["status"] == "approved"

    done = subprocess.run(["bash", "-c", CURL_RESULT], env=env, capture_output=True, text=True, timeout=30)
    body = json.loads(done.stdout)
    assert body["status"] == "succeeded"
    assert body["result"] == {"refund_id": "re_curl"}

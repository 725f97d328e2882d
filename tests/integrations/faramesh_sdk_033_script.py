"""Runs inside a virtual environment that has only the published faramesh-sdk 0.3.3.

Exercises its module functions, legacy class, gate helpers and errors against a real
server, using only its own configuration (FARAMESH_BASE_URL, FARAMESH_TOKEN). Each
check prints `ok <name>`; any failure exits non-zero with the traceback.
"""

from __future__ import annotations

import os
import threading
import time

import requests
from faramesh.client import DeferredError, DenyError, _get_config

import faramesh
from faramesh import (
    ClientConfig,
    ExecutionGovernorClient,
    FarameshAuthError,
    FarameshDeniedError,
    FarameshNotFoundError,
    FarameshPolicyError,
    FarameshValidationError,
    approve_action,
    block_until_approved,
    compute_request_hash,
    configure,
    deny_action,
    execute_if_allowed,
    gate_decide,
    get_action,
    list_actions,
    replay_action,
    replay_decision,
    stream_events,
    submit_action,
    verify_request_hash,
    wait_for_completion,
)

URL = os.environ["FARAMESH_BASE_URL"]
AGENT = os.environ["FARAMESH_TOKEN"]
APPROVER = os.environ["COMPAT_APPROVER_TOKEN"]
BOT = "compat-bot"


def ok(name: str) -> None:
    print("ok", name, flush=True)


def as_agent() -> None:
    configure(base_url=URL, token=AGENT, max_retries=0)


def as_approver() -> None:
    configure(base_url=URL, token=APPROVER, max_retries=0)


def expect(exc_type: type[BaseException], fn, *args, **kwargs) -> BaseException:
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        return exc
    raise AssertionError(f"{fn.__name__} did not raise {exc_type.__name__}")


# -- configuration from the environment -------------------------------------------------
assert _get_config().base_url == URL and _get_config().token == AGENT
allowed = submit_action(BOT, "refund", "process", {"amount": 50, "customer_id": "c1"}, {"ticket": 7})
ok("env-config")

# -- submit: the fields it reads ----------------------------------------------------------
for key in ("id", "status", "decision", "reason", "risk_level", "request_hash", "policy_hash", "agent_id"):
    assert key in allowed, key
assert allowed["status"] == "allowed" and allowed["decision"] == "allow", allowed
assert allowed["agent_id"] == BOT and allowed["reason"] == "Small refunds allowed"
payload = {
    "agent_id": BOT,
    "tool": "refund",
    "operation": "process",
    "params": {"amount": 50, "customer_id": "c1"},
    "context": {"ticket": 7},
}
assert compute_request_hash(payload) == allowed["request_hash"]
assert verify_request_hash(payload, allowed["request_hash"])
ok("submit-allowed")

err = expect(FarameshPolicyError, submit_action, BOT, "user_management", "delete", {"user_id": "u1"})
assert "Agents may not delete users" in str(err), err
ok("submit-denied-raises")

as_agent()
pending = submit_action(BOT, "refund", "process", {"amount": 500})
to_deny = submit_action(BOT, "refund", "process", {"amount": 700})
assert pending["status"] == "pending_approval" and pending["decision"] == "require_approval"
assert "approval_token" not in pending  # an agent never sees it
ok("submit-pending")

# -- reads ------------------------------------------------------------------------------------
assert get_action(pending["id"])["id"] == pending["id"]
expect(FarameshNotFoundError, get_action, "00000000-0000-0000-0000-000000000000")
mine = list_actions(limit=10, agent_id=BOT)
assert {a["id"] for a in mine} >= {allowed["id"], pending["id"], to_deny["id"]}
first = list_actions(limit=1, offset=0, agent_id=BOT)
second = list_actions(limit=1, offset=1, agent_id=BOT)
assert len(first) == len(second) == 1 and first[0]["id"] != second[0]["id"]
held = list_actions(status="pending_approval", tool="refund", agent_id=BOT)
assert {a["id"] for a in held} == {pending["id"], to_deny["id"]}
ok("get-and-list")

# -- approvals through /approval with the approval token -------------------------------------
as_approver()
token = get_action(to_deny["id"]).get("approval_token")
assert token, "approvers read the approval token"
approved = approve_action(pending["id"], reason="fine")  # fetches the token itself
assert approved["status"] == "approved", approved
denied = deny_action(to_deny["id"], token=token, reason="too much")
assert denied["status"] == "denied" and denied["reason"] == "too much", denied
assert block_until_approved(pending["id"], poll_interval=1, timeout=5)["status"] == "approved"
expect(FarameshDeniedError, block_until_approved, to_deny["id"], poll_interval=1, timeout=5)
ok("approve-and-deny")

# -- the agent executes and reports; wait_for_completion sees it -----------------------------
as_agent()
r = requests.post(
    f"{URL}/v1/actions/{pending['id']}/result",
    json={"success": True, "result": {"refunded": 500}},
    headers={"Authorization": f"Bearer {AGENT}"},
    timeout=10,
)
assert r.status_code == 200, r.text
done = wait_for_completion(pending["id"], poll_interval=0.2, timeout=5)
assert done["status"] == "succeeded" and done["result"] == {"refunded": 500}
ok("wait-for-completion")

# -- gate helpers -----------------------------------------------------------------------------
small = gate_decide(BOT, "refund", "process", {"amount": 50, "customer_id": "c1"}, {"ticket": 7})
assert small.outcome == "EXECUTE" and small.request_hash == allowed["request_hash"]
assert small.policy_hash == allowed["policy_hash"] and small.reason == "Small refunds allowed"
assert gate_decide(BOT, "refund", "process", {"amount": 500}).outcome == "ABSTAIN"
assert gate_decide(BOT, "user_management", "delete", {"user_id": "u"}).outcome == "HALT"
assert isinstance(faramesh.govern(BOT, "refund", "process", {"amount": 5}), faramesh.GateDecision)
expect(DenyError, faramesh.govern, BOT, "user_management", "delete", {"user_id": "u"})
expect(DeferredError, faramesh.govern, BOT, "refund", "process", {"amount": 500})
ran = execute_if_allowed(BOT, "refund", "process", {"amount": 5}, executor=lambda t, o, p, c: {"did": p["amount"]})
assert ran["executed"] and ran["execution_result"] == {"did": 5}
held_back = execute_if_allowed(BOT, "refund", "process", {"amount": 500}, executor=lambda *a: 1 / 0)
assert not held_back["executed"]
ok("gate")

replay = replay_decision(action_id=allowed["id"])
assert replay.success, replay.mismatches
assert replay.original_outcome == "EXECUTE" and replay.request_hash_match and replay.policy_hash_match
ok("replay-decision")

again = replay_action(allowed["id"])
assert again["id"] != allowed["id"] and again["status"] == "allowed"
assert again["context"]["replayed_from"] == allowed["id"] and again["context"]["replay"] is True
ok("replay-action")

# -- errors -----------------------------------------------------------------------------------
expect(FarameshValidationError, submit_action, BOT, "bad tool name", "x", {})
configure(base_url=URL, token="fm_not_a_real_key", max_retries=0)
expect(FarameshAuthError, submit_action, BOT, "refund", "process", {"amount": 1})
ok("errors")

# -- the legacy class -------------------------------------------------------------------------
legacy = ExecutionGovernorClient(ClientConfig(base_url=URL, token=AGENT, agent_id="legacy-bot"))
action = legacy.submit_action("refund", "process", {"amount": 3})
assert action["status"] == "allowed" and action["agent_id"] == "legacy-bot"
assert legacy.get_action(action["id"])["id"] == action["id"]
assert any(a["id"] == action["id"] for a in legacy.list_actions(limit=5, agent_id="legacy-bot"))
ok("legacy-class")

# -- server-sent events -----------------------------------------------------------------------
as_approver()
seen: list[dict] = []
stop = threading.Event()


def keep_submitting() -> None:
    for _ in range(40):
        if stop.is_set():
            return
        time.sleep(0.25)
        requests.post(
            f"{URL}/v1/actions",
            json={"agent_id": BOT, "tool": "refund", "operation": "process", "params": {"amount": 1}},
            headers={"Authorization": f"Bearer {AGENT}"},
            timeout=10,
        )


threading.Thread(target=keep_submitting, daemon=True).start()
stream_events(seen.append, event_types=["action.created"], stop_after=1, timeout=20)
stop.set()
assert seen and seen[0]["type"] == "action.created" and seen[0]["action"]["tool"] == "refund", seen
ok("stream-events")

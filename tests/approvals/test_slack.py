"""Slack: Block Kit messages with Approve / Deny buttons delivered to a real receiver,
and the interaction endpoint verifying Slack's v0 signature and 5-minute window."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.approvals.support import POLICY, Receiver, cli_key, eventually, get, slack_request, submit
from tests.conftest import ServerProcess, auth, faramesh_cmd

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
LEAD_USER, PLAIN_USER, SELF_USER, UNKNOWN_USER = "U0LEAD0001", "U0PLAIN001", "U0SELF0001", "U0NOBODY01"


@dataclass
class SlackSetup:
    server: ServerProcess
    receiver: Receiver
    agent: str
    approver_submitter: str
    lead_key_id: str

    def interact(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(self.server.url + "/v1/integrations/slack/interactions", content=body, headers=headers)


@pytest.fixture(scope="module")
def slack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlackSetup]:
    tmp = tmp_path_factory.mktemp("slack")
    db = f"sqlite:///{tmp / 'slack.db'}"
    lead_id, _ = cli_key(db, "approver", "finance-leads", name="Lead via Slack")
    plain_id, _ = cli_key(db, "approver", name="Plain via Slack")
    self_id, self_secret = cli_key(db, "approver", name="Submitting approver")
    config = tmp / "slack.yaml"
    config.write_text(
        f"signing_secret: {SIGNING_SECRET}\nusers:\n  {LEAD_USER}: {lead_id}\n"
        f"  {PLAIN_USER}: {plain_id}\n  {SELF_USER}: {self_id}\n"
    )
    receiver = Receiver().start()
    hooks = tmp / "hooks.yaml"
    hooks.write_text(
        json.dumps([{"url": receiver.url, "format": "slack", "events": ["action.pending_approval", "action.approved"]}])
    )
    server = ServerProcess(db, POLICY, ("--slack-config", str(config), "--webhooks", str(hooks)), cwd=tmp).start()
    try:
        yield SlackSetup(server, receiver, server.create_key("agent"), self_secret, lead_id)
    finally:
        server.stop()
        receiver.stop()


def message_for(receiver: Receiver, action_id: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for r in receiver.requests:
            body = r.json()
            for block in body.get("blocks", []):
                if block.get("type") == "actions" and any(
                    str(e.get("value")).partition(":")[0] == action_id for e in block["elements"]
                ):
                    return dict(body)
        return None

    return eventually(find)


def test_pending_action_is_posted_as_block_kit_with_buttons(slack: SlackSetup) -> None:
    action = submit(slack.server, slack.agent, "refund", "process", amount=750, customer_id="cus_42")
    message = message_for(slack.receiver, action["id"])
    assert "Approval needed" in message["text"] and "refund.process" in message["text"]
    text = json.dumps(message["blocks"])
    assert "Large refunds need approval" in text and "high" in text and "cus_42" in text
    [buttons] = [b for b in message["blocks"] if b["type"] == "actions"]
    assert [(e["action_id"], e["value"], e.get("style")) for e in buttons["elements"]] == [
        ("faramesh_approve", f"{action['id']}:{action['request_hash']}", "primary"),
        ("faramesh_deny", f"{action['id']}:{action['request_hash']}", "danger"),
    ]
    assert message["blocks"][0]["type"] == "header"


def test_signed_interaction_approves_as_the_mapped_key(slack: SlackSetup) -> None:
    action = submit(slack.server, slack.agent, "refund", "process", amount=800)
    message = message_for(slack.receiver, action["id"])
    [buttons] = [b for b in message["blocks"] if b["type"] == "actions"]
    approve_button = buttons["elements"][0]
    body, headers = slack_request(SIGNING_SECRET, PLAIN_USER, approve_button["value"])
    r = slack.interact(body, headers)
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["response_type"] == "ephemeral" and "approved" in reply["text"]
    after = get(slack.server, slack.agent, action["id"])
    assert after["status"] == "approved"
    assert "Plain via Slack" in after["decided_by"] and after["decision_reason"] == "Approved in Slack by alice"
    # The channel hears about the outcome too (a message without buttons).
    done = eventually(
        lambda: [
            r.json()
            for r in slack.receiver.of_type("action.approved")
            if action["id"] in json.dumps(r.json()) and "Approved" in r.json()["text"]
        ]
    )
    assert not [b for b in done[0]["blocks"] if b["type"] == "actions"]


def test_deny_button_denies(slack: SlackSetup) -> None:
    action = submit(slack.server, slack.agent, "refund", "process", amount=801)
    body, headers = slack_request(SIGNING_SECRET, PLAIN_USER, action["id"], approve=False)
    r = slack.interact(body, headers)
    assert r.status_code == 200 and r.json()["status"] == "denied"
    after = get(slack.server, slack.agent, action["id"])
    assert after["status"] == "denied" and after["reason"] == "Denied in Slack by alice"


@pytest.mark.parametrize(
    "tamper",
    ["stale", "future", "wrong_secret", "body_changed", "no_signature", "no_timestamp"],
)
def test_stale_or_wrongly_signed_requests_are_refused(slack: SlackSetup, tamper: str) -> None:
    action = submit(slack.server, slack.agent, "refund", "process", amount=802)
    now = int(time.time())
    if tamper == "stale":
        body, headers = slack_request(SIGNING_SECRET, PLAIN_USER, action["id"], timestamp=now - 330)
    elif tamper == "future":
        body, headers = slack_request(SIGNING_SECRET, PLAIN_USER, action["id"], timestamp=now + 330)
    elif tamper == "wrong_secret":
        body, headers = slack_request("not-the-signing-secret", PLAIN_USER, action["id"])
    else:
        body, headers = slack_request(SIGNING_SECRET, PLAIN_USER, action["id"])
        if tamper == "body_changed":
            other = submit(slack.server, slack.agent, "refund", "process", amount=803)
            body = body.replace(action["id"].encode(), other["id"].encode())
        elif tamper == "no_signature":
            del headers["X-Slack-Signature"]
        else:
            del headers["X-Slack-Request-Timestamp"]
    r = slack.interact(body, headers)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "unauthorized" and "Slack request refused" in r.json()["detail"]
    assert get(slack.server, slack.agent, action["id"])["status"] == "pending_approval"


def test_a_request_inside_the_window_is_accepted(slack: SlackSetup) -> None:
    action = submit(slack.server, slack.agent, "refund", "process", amount=804)
    body, headers = slack_request(SIGNING_SECRET, PLAIN_USER, action["id"], timestamp=int(time.time()) - 240)
    assert slack.interact(body, headers).status_code == 200
    assert get(slack.server, slack.agent, action["id"])["status"] == "approved"


def test_unknown_slack_users_are_told_how_to_link_their_account(slack: SlackSetup) -> None:
    action = submit(slack.server, slack.agent, "refund", "process", amount=805)
    body, headers = slack_request(SIGNING_SECRET, UNKNOWN_USER, action["id"])
    r = slack.interact(body, headers)
    # A genuine request: answered (200) with a message only the presser sees, not a bare 403.
    assert r.status_code == 200 and r.json()["response_type"] == "ephemeral"
    assert r.json()["error"]["code"] == "forbidden" and r.json()["error"]["field"] == "user"
    assert f"{UNKNOWN_USER}: <your key id>" in r.json()["text"] and "--slack-config" in r.json()["text"]
    assert get(slack.server, slack.agent, action["id"])["status"] == "pending_approval"


def test_the_usual_rules_apply_to_slack_decisions(slack: SlackSetup) -> None:
    # The mapped key submitted this action, so it cannot approve it from Slack either.
    own = submit(slack.server, slack.approver_submitter, "refund", "process", amount=806)
    body, headers = slack_request(SIGNING_SECRET, SELF_USER, own["id"])
    r = slack.interact(body, headers)
    assert r.status_code == 200 and r.json()["error"]["code"] == "forbidden"
    assert "Could not approve" in r.json()["text"]
    assert get(slack.server, slack.approver_submitter, own["id"])["status"] == "pending_approval"
    # Groups and quorum: a wire needs two finance leads; the plain approver is not one.
    wire = submit(slack.server, slack.agent, "wire", "send", amount=30_000)
    body, headers = slack_request(SIGNING_SECRET, PLAIN_USER, wire["id"])
    assert slack.interact(body, headers).json()["error"]["field"] == "approvers"
    body, headers = slack_request(SIGNING_SECRET, LEAD_USER, wire["id"])
    r = slack.interact(body, headers)
    assert r.json()["status"] == "pending_approval" and "(1 of 2)" in r.json()["text"]
    # A replayed identical request is a second vote by the same person: refused.
    again = slack.interact(body, headers)
    assert again.json()["error"]["code"] == "invalid_transition"
    after = get(slack.server, slack.agent, wire["id"])
    assert after["status"] == "pending_approval" and len(after["approvals"]) == 1


def test_a_button_decides_only_the_arguments_its_message_showed(slack: SlackSetup) -> None:
    action = submit(slack.server, slack.agent, "refund", "process", amount=6000, customer_id="cus_1")
    [buttons] = [b for b in message_for(slack.receiver, action["id"])["blocks"] if b["type"] == "actions"]
    approve, deny = (e["value"] for e in buttons["elements"])
    # Another approver approves smaller, edited arguments (the rule needs two approvers).
    editor = slack.server.create_key("approver", name="editor")
    r = httpx.post(
        slack.server.url + f"/v1/actions/{action['id']}/approve",
        json={"params": {"amount": 5500, "customer_id": "cus_1"}},
        headers=auth(editor),
    )
    assert r.status_code == 200 and r.json()["status"] == "pending_approval", r.text
    # The old message's buttons, and buttons from before they carried the hash, are refused.
    for value, approve_it in ((approve, True), (deny, False), (action["id"], True)):
        body, headers = slack_request(SIGNING_SECRET, PLAIN_USER, value, approve=approve_it)
        reply = slack.interact(body, headers)
        assert reply.status_code == 200, reply.text
        assert reply.json()["error"]["field"] == "request_hash" and "Could not" in reply.json()["text"]
    after = get(slack.server, slack.agent, action["id"])
    assert after["status"] == "pending_approval" and after["params"]["amount"] == 5500
    assert len(after["approvals"]) == 1 and after["approval"]["counted"] == 1
    # A button bound to the current arguments counts.
    body, headers = slack_request(SIGNING_SECRET, PLAIN_USER, f"{action['id']}:{after['request_hash']}")
    assert slack.interact(body, headers).json()["status"] == "approved"


def test_revoked_mapped_key_is_refused(slack: SlackSetup) -> None:
    # Runs after the other tests that press buttons as the lead (file order).
    admin = auth(slack.server.admin_key or "")
    action = submit(slack.server, slack.agent, "refund", "process", amount=807)
    assert httpx.delete(f"{slack.server.url}/v1/keys/{slack.lead_key_id}", headers=admin).status_code == 200
    body, headers = slack_request(SIGNING_SECRET, LEAD_USER, action["id"])
    r = slack.interact(body, headers)
    assert r.status_code == 200 and r.json()["error"]["code"] == "forbidden" and "revoked" in r.json()["text"]
    assert get(slack.server, slack.agent, action["id"])["status"] == "pending_approval"


def test_interactions_without_slack_config_are_404(srv: ServerProcess) -> None:
    body, headers = slack_request(SIGNING_SECRET, PLAIN_USER, "x")
    r = httpx.post(srv.url + "/v1/integrations/slack/interactions", content=body, headers=headers)
    assert r.status_code == 404 and "not configured" in r.json()["detail"]


def test_broken_slack_config_stops_the_server_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "slack.yaml"
    bad.write_text("users:\n  U0LEAD0001: abc\n")
    out = subprocess.run(
        faramesh_cmd("serve", "--database-url", f"sqlite:///{tmp_path / 'x.db'}", "--slack-config", str(bad)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "signing_secret is required" in out.stderr


def test_a_key_id_yaml_reads_as_a_number_is_refused_with_how_to_fix_it(tmp_path: Path) -> None:
    """YAML reads an unquoted id of digits as a number (with a leading 0, as octal), which
    no longer names the key: the message says to quote it. Quoted, it loads as written."""
    from faramesh.errors import InvalidInput
    from faramesh.notify.slack import load_slack_config

    config = tmp_path / "slack.yaml"
    config.write_text("signing_secret: s3cret\nusers:\n  U0LEAD0001: 1234567890123456\n")
    with pytest.raises(InvalidInput) as refused:
        load_slack_config(config)
    assert refused.value.field == "users.U0LEAD0001"
    assert "read as the number" in refused.value.message and "quotes" in refused.value.message
    config.write_text('signing_secret: s3cret\nusers:\n  U0LEAD0001: "1234567890123456"\n')
    assert dict(load_slack_config(config).users) == {"U0LEAD0001": "1234567890123456"}


def test_new_key_ids_never_read_as_numbers_in_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key id goes into YAML files as it is: a draw that could read as a number there
    (digits, an exponent, a binary literal, a leading zero) is drawn again."""
    from faramesh.policy.parser import load_plain
    from faramesh.service import keys

    numbers = ["1234567890123456", "3e41234567890123", "0b01101001011010", "0123456701234567", "9e9e9e9e9e9e9e9e"]
    assert [type(load_plain(f"id: {n}")["id"]) for n in numbers[:3]] == [int, float, int]
    draws = iter([*numbers, "12ab34cd56ef7890"])
    monkeypatch.setattr(keys.secrets, "token_hex", lambda n: next(draws))
    assert keys.new_key_id() == "12ab34cd56ef7890"

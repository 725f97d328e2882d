"""`serve --log-format json`: one JSON object per log line, with the action id."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from tests.conftest import ServerProcess, auth


def test_json_log_lines_name_each_change_with_its_action_id(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(extra_args=("--log-format", "json"))
    agent, approver = server.create_key("agent"), server.create_key("approver")
    r = httpx.post(
        server.url + "/v1/actions",
        json={"tool": "refund", "operation": "process", "params": {"amount": 500}, "context": {}},
        headers=auth(agent),
    )
    action_id = r.json()["id"]
    httpx.post(f"{server.url}/v1/actions/{action_id}/approve", json={}, headers=auth(approver)).raise_for_status()
    server.stop()

    # Everything after the start-up banner is a log record, and each one is JSON.
    lines = "".join(server.output).splitlines()
    banner_end = max(i for i, line in enumerate(lines) if line.startswith(("Log in", "  fm_", "First start")))
    records = [json.loads(line) for line in lines[banner_end + 1 :] if line.strip()]
    for record in records:
        assert {"ts", "level", "logger", "message"} <= record.keys()
    about = [r for r in records if r.get("action_id") == action_id]
    assert [r["event"] for r in about] == ["action.created", "action.approved"]
    assert about[0]["status"] == "pending_approval" and about[1]["status"] == "approved"
    assert all(r["level"] == "info" and r["tool"] == "refund" for r in about)

"""`serve --log-format json`: one JSON object per log line, with the action id."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn

from faramesh.observability.logging import current_action_id
from faramesh.server.drain import DrainingServer
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


def test_the_drain_at_sigterm_is_not_labelled_with_a_request_s_action(make_client: Callable[..., Any]) -> None:
    """SIGTERM can land while a request's task runs (its action id is in the context): the
    drain it schedules, and the line that drain logs, belong to no request."""
    srv = make_client()
    server = DrainingServer(uvicorn.Config(srv.app), srv.app)
    labels: list[tuple[str, str | None]] = []

    class Labels(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            labels.append((record.getMessage(), current_action_id.get()))

    handler, logger = Labels(), logging.getLogger("faramesh.server")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:

        async def signal_during_a_request() -> None:
            current_action_id.set("a1b2c3d4-0000-4000-8000-000000000000")
            server.handle_exit(signal.SIGTERM, None)  # as the signal handler would, mid-request
            for _ in range(3):
                await asyncio.sleep(0)  # the scheduled drain runs

        asyncio.run(signal_during_a_request())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert [label for message, label in labels if message.startswith("stopping")] == [None]


def test_text_time_stamps_match_the_standard_formatter_across_second_boundaries() -> None:
    """The text format's remembered date and clock must never outlive its second: records
    0.7 ms apart across many seconds (and one far back in time) read exactly as logging's own."""
    from faramesh.observability.logging import TEXT_FORMAT, TextFormatter

    ours, standard = TextFormatter(TEXT_FORMAT), logging.Formatter(TEXT_FORMAT)
    start = 1_790_000_000.9995
    moments = [start + i * 0.0007 for i in range(5_000)] + [start - 86_400 * 400, start + 3.0]
    for created in moments:
        record = logging.LogRecord("faramesh.events", logging.INFO, "", 0, "created %s", ("a1",), None)
        record.created, record.msecs = created, int((created - int(created)) * 1000)
        assert ours.format(record) == standard.format(record)
    assert ours.formatTime(record, "%Y") == standard.formatTime(record, "%Y")

"""/metrics of the app in-process, read with prometheus-client's own parser."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from faramesh import __version__
from tests.approvals.support import eventually, receiving
from tests.conftest import SEED_POLICY
from tests.inprocess import InProcessServer, auth

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def scrape(server: InProcessServer) -> dict[str, Any]:
    r = server.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(r.text)}


def value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {sample}{labels} in {families[family].samples}")


def test_metrics_count_decisions_latencies_pending_and_reloads(
    make_client: Callable[..., InProcessServer], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(SEED_POLICY.read_text())
    server = make_client(policy=policy)
    agent, approver = server.create_key("agent"), server.create_key("approver")

    def submit(amount: float, tool: str = "refund", operation: str = "process") -> dict[str, Any]:
        body = {"tool": tool, "operation": operation, "params": {"amount": amount}, "reattach": False}
        r = server.post("/v1/actions", json=body, headers=auth(agent))
        assert r.status_code == 201, r.text
        return dict(r.json())

    before = scrape(server)
    assert value(before, "faramesh_build_info", "faramesh_build_info", version=__version__) == 1
    assert value(before, "faramesh_pending_actions", "faramesh_pending_actions") == 0
    assert value(before, "faramesh_webhook_deliveries", "faramesh_webhook_deliveries_total", outcome="failed") == 0

    for amount in (10, 20, 30):
        assert submit(amount)["status"] == "allowed"
    held = [submit(500) for _ in range(3)]
    assert submit(1, "user_management", "delete")["status"] == "denied"
    assert submit(1, "unknown_tool")["status"] == "denied"
    server.post(f"/v1/actions/{held[0]['id']}/approve", json={}, headers=auth(approver)).raise_for_status()
    server.post(f"/v1/actions/{held[1]['id']}/deny", json={}, headers=auth(approver)).raise_for_status()

    policy.write_text(SEED_POLICY.read_text() + "\n  - match: {tool: search}\n    allow: true\n")
    assert server.post("/v1/policy/reload", headers=auth(server.admin_key or "")).status_code == 200
    policy.write_text("rules: [oops")
    assert server.post("/v1/policy/reload", headers=auth(server.admin_key or "")).status_code == 422

    m = scrape(server)
    decisions = "faramesh_decisions_total"
    assert value(m, "faramesh_decisions", decisions, effect="allow", tool="refund", rule="rules[1]") == 3
    assert value(m, "faramesh_decisions", decisions, effect="require_approval", tool="refund", rule="rules[0]") == 3
    assert value(m, "faramesh_decisions", decisions, effect="deny", tool="user_management", rule="rules[2]") == 1
    assert value(m, "faramesh_decisions", decisions, effect="deny", tool="unknown_tool", rule="default") == 1
    assert value(m, "faramesh_submit_seconds", "faramesh_submit_seconds_count") == 8
    assert value(m, "faramesh_submit_seconds", "faramesh_submit_seconds_bucket", le="+Inf") == 8
    assert value(m, "faramesh_pending_actions", "faramesh_pending_actions") == 1
    assert value(m, "faramesh_approval_seconds", "faramesh_approval_seconds_count", outcome="approved") == 1
    assert value(m, "faramesh_approval_seconds", "faramesh_approval_seconds_count", outcome="denied") == 1
    assert value(m, "faramesh_policy_reloads", "faramesh_policy_reloads_total", outcome="applied") == 1
    assert value(m, "faramesh_policy_reloads", "faramesh_policy_reloads_total", outcome="rejected") == 1


def test_webhook_deliveries_and_failures_are_counted(
    make_client: Callable[..., InProcessServer], tmp_path: Path
) -> None:
    with receiving(statuses=[500]) as receiver:  # the first attempt fails, the retry succeeds
        hooks = tmp_path / "webhooks.yaml"
        hooks.write_text(json.dumps([{"url": receiver.url, "secret": "whsec_metrics", "events": ["action.created"]}]))
        server = make_client(webhooks=str(hooks), webhook_retry_base=0.2)
        agent = server.create_key("agent")
        server.post(
            "/v1/actions",
            json={"tool": "refund", "operation": "process", "params": {"amount": 5}, "context": {}},
            headers=auth(agent),
        ).raise_for_status()
        webhooks = "faramesh_webhook_deliveries"
        eventually(lambda: value(scrape(server), webhooks, webhooks + "_total", outcome="delivered") == 1)
        m = scrape(server)
        assert value(m, webhooks, webhooks + "_total", outcome="failed") == 1
        assert len(receiver.of_type("action.created")) == 2


def test_http_requests_by_route_template_and_status_and_process_metrics(
    make_client: Callable[..., InProcessServer], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n"
        "  - id: big-refunds\n    match: {tool: refund, amount_gt: 100}\n    require_approval: true\n"
        "  - id: small-refunds\n    match: {tool: refund}\n    allow: true\n"
    )
    server = make_client(policy=policy)
    agent = server.create_key("agent")
    ids = []
    for amount in (5, 500):
        body = {"tool": "refund", "operation": "process", "params": {"amount": amount}, "context": {}}
        r = server.post("/v1/actions", json=body, headers=auth(agent))
        assert r.status_code == 201
        ids.append(r.json()["id"])
    assert server.get(f"/v1/actions/{ids[0]}", headers=auth(agent)).status_code == 200
    assert server.get("/v1/actions/no-such-id", headers=auth(agent)).status_code == 404
    assert server.get("/no/such/page/7f3a").status_code == 404

    m = scrape(server)
    requests = "faramesh_http_requests"
    total = requests + "_total"
    assert value(m, requests, total, method="POST", route="/v1/actions", status="201") == 2
    assert value(m, requests, total, method="GET", route="/v1/actions/{action_id}", status="200") == 1
    assert value(m, requests, total, method="GET", route="/v1/actions/{action_id}", status="404") == 1
    assert value(m, requests, total, method="GET", route="unmatched", status="404") == 1
    routes = {s.labels["route"] for s in m[requests].samples}
    assert not any(ids[0] in r or "no-such-id" in r or "7f3a" in r for r in routes), routes
    seconds = "faramesh_http_request_duration_seconds"
    assert value(m, seconds, seconds + "_count", method="GET", route="/v1/actions/{action_id}") == 2
    # Rules are counted under the ids the policy gives them, not their positions.
    decisions = "faramesh_decisions_total"
    assert value(m, "faramesh_decisions", decisions, effect="allow", tool="refund", rule="small-refunds") == 1
    assert value(m, "faramesh_decisions", decisions, effect="require_approval", rule="big-refunds") == 1
    # The standard process and runtime families.
    for family in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds", "python_info"):
        assert family in m, sorted(m)
    assert value(m, "process_start_time_seconds", "process_start_time_seconds") > 0

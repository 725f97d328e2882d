"""OpenTelemetry spans: per request and per decision, with the standard OTEL_* setup."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from faramesh.config import Settings
from faramesh.model import Role
from faramesh.observability import Telemetry
from faramesh.observability.tracing import Tracing, requested
from faramesh.policy import Policy
from faramesh.server.app import create_app
from faramesh.service import Governor
from faramesh.service import keys as service_keys
from faramesh.storage import Store
from tests.conftest import SEED_POLICY, ServerProcess, auth, free_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def traced_app(tmp_path: Path) -> Iterator[tuple[str, str, InMemorySpanExporter]]:
    """The real app on a real port, reporting spans into an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    url = f"sqlite:///{tmp_path / 'traced.db'}"
    store = Store(url)
    store.upgrade()
    _, agent_key = service_keys.create_key(store, role=Role.AGENT, name="agent", actor="test")
    governor = Governor(
        store, Policy.from_file(SEED_POLICY), telemetry=Telemetry(tracing=Tracing(provider.get_tracer("faramesh")))
    )
    app = create_app(Settings(database_url=url, policy=str(SEED_POLICY)), governor=governor)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the app did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", agent_key, exporter
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


def finished(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    # The request span ends just after the response is sent: give it a moment.
    deadline = time.monotonic() + 5
    while True:
        spans = [s for s in exporter.get_finished_spans() if s.name == name]
        if spans or time.monotonic() > deadline:
            return spans
        time.sleep(0.02)


def test_decision_span_carries_tool_operation_effect_and_rule(
    traced_app: tuple[str, str, InMemorySpanExporter],
) -> None:
    url, agent_key, exporter = traced_app
    r = httpx.post(
        url + "/v1/actions",
        json={"tool": "refund", "operation": "process", "params": {"amount": 500}, "context": {}},
        headers=auth(agent_key) | {"traceparent": TRACEPARENT},
    )
    assert r.status_code == 201, r.text
    action = r.json()
    [decision] = finished(exporter, "faramesh.decision")
    attrs = dict(decision.attributes or {})
    assert attrs["faramesh.tool"] == "refund"
    assert attrs["faramesh.operation"] == "process"
    assert attrs["faramesh.effect"] == "require_approval"
    assert attrs["faramesh.rule_id"] == "rules[0]"
    assert attrs["faramesh.action_id"] == action["id"]
    [request] = finished(exporter, "POST /v1/actions")
    assert dict(request.attributes or {})["http.response.status_code"] == 201
    assert dict(request.attributes or {})["http.route"] == "/v1/actions"
    # The request continues the caller's trace, and the decision is part of the request.
    assert format(request.context.trace_id, "032x") == TRACE_ID
    assert decision.parent is not None and decision.parent.span_id == request.context.span_id


def test_denied_decision_span_names_the_denying_rule(traced_app: tuple[str, str, InMemorySpanExporter]) -> None:
    url, agent_key, exporter = traced_app
    r = httpx.post(
        url + "/v1/actions",
        json={"tool": "user_management", "operation": "delete", "params": {}, "context": {}},
        headers=auth(agent_key),
    )
    assert r.status_code == 201 and r.json()["status"] == "denied"
    [decision] = finished(exporter, "faramesh.decision")
    attrs = dict(decision.attributes or {})
    assert (attrs["faramesh.effect"], attrs["faramesh.rule_id"]) == ("deny", "rules[2]")


def console_spans(output: str) -> list[dict[str, Any]]:
    """The JSON objects the console exporter printed among the server's other output."""
    decoder = json.JSONDecoder()
    spans, pos = [], 0
    while (start := output.find("{\n", pos)) != -1:
        try:
            obj, pos = decoder.raw_decode(output, start)
        except ValueError:
            pos = start + 1
            continue
        if isinstance(obj, dict) and "context" in obj and "name" in obj:
            spans.append(obj)
    return spans


def test_otel_environment_variables_turn_tracing_on(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(env={"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "faramesh-test"})
    agent = server.create_key("agent")
    r = httpx.post(
        server.url + "/v1/actions",
        json={"tool": "refund", "operation": "process", "params": {"amount": 5}, "context": {}},
        headers=auth(agent) | {"traceparent": TRACEPARENT},
    )
    assert r.status_code == 201
    server.stop()  # flushes the batch of spans
    spans = console_spans("".join(server.output))
    [decision] = [s for s in spans if s["name"] == "faramesh.decision"]
    assert decision["attributes"]["faramesh.effect"] == "allow"
    assert decision["attributes"]["faramesh.rule_id"] == "rules[1]"
    assert decision["resource"]["attributes"]["service.name"] == "faramesh-test"
    assert decision["context"]["trace_id"] == "0x" + TRACE_ID
    # One server span for the request (FastAPI's own request and operation spans stay off),
    # with the decision inside it.
    in_trace = [s for s in spans if s["context"]["trace_id"] == "0x" + TRACE_ID]
    [request] = [s for s in in_trace if s["kind"] == "SpanKind.SERVER"]
    assert request["name"] == "POST /v1/actions"
    assert sorted(s["name"] for s in in_trace) == ["POST /v1/actions", "faramesh.decision"]


def test_tracing_is_off_unless_asked_for() -> None:
    assert not requested({})
    assert requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert requested({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not requested({"OTEL_TRACES_EXPORTER": "none"})
    assert not requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"})

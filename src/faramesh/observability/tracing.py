"""OpenTelemetry traces (optional: `pip install "faramesh[otel]"`).

Tracing is on when the OpenTelemetry SDK is installed and either the standard
environment asks for it (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or the embedding program already installed a
tracer provider. OTEL_SDK_DISABLED=true turns it off. Everything else (service name,
resource attributes, sampler, OTLP endpoint, headers, protocol) comes from the
standard OTEL_* variables, read by the SDK and the exporters themselves.

There is a span per HTTP request (`faramesh.server.tracing_middleware`) and one per recorded decision
(`record_decision`), with the tool, operation, effect and rule id as attributes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("faramesh.tracing")

_REQUESTING_VARS = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether the standard environment variables ask for traces."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in _REQUESTING_VARS)


class Tracing:
    """A tracer, and the provider this module installed (to flush at shutdown), if any."""

    def __init__(self, tracer: Any, provider: Any = None) -> None:
        self.tracer = tracer
        self._own_provider = provider

    def shutdown(self) -> None:
        if self._own_provider is not None:
            self._own_provider.shutdown()


def setup(env: Mapping[str, str] | None = None) -> Tracing | None:
    """Start tracing when asked for and possible; None otherwise."""
    env = os.environ if env is None else env
    try:
        from opentelemetry import trace
    except ImportError:
        if requested(env):
            log.warning('OTEL_* asks for traces but OpenTelemetry is not installed: pip install "faramesh[otel]"')
        return None
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    current = trace.get_tracer_provider()
    if not isinstance(current, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        # The program around us configured OpenTelemetry: report into its provider.
        return Tracing(current.get_tracer("faramesh"))
    if not requested(env):
        return None
    try:
        provider = _sdk_provider(env)
    except ImportError:
        log.warning('OTEL_* asks for traces but the OpenTelemetry SDK is missing: pip install "faramesh[otel]"')
        return None
    trace.set_tracer_provider(provider)
    return Tracing(provider.get_tracer("faramesh"), provider)


def _sdk_provider(env: Mapping[str, str]) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    attributes: dict[str, Any] = {}
    named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not named:
        attributes["service.name"] = "faramesh"
    provider = TracerProvider(resource=Resource.create(attributes))  # sampler: OTEL_TRACES_SAMPLER
    exporters = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if e.strip()]
    for name in exporters or ["otlp"]:
        if name == "none":
            continue
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(env)))
        else:
            log.warning("unknown OTEL_TRACES_EXPORTER %r ignored (use otlp, console or none)", name)
    return provider


def _otlp_exporter(env: Mapping[str, str]) -> Any:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_* variables


def record_decision(tracing: Tracing | None, row: Any, started_ns: int) -> None:
    """A span for one recorded decision, from `started_ns` (time.time_ns()) until now."""
    if tracing is None:
        return
    span = tracing.tracer.start_span(
        "faramesh.decision",
        start_time=started_ns,
        attributes={
            "faramesh.action_id": row.id,
            "faramesh.tool": row.tool,
            "faramesh.operation": row.operation,
            "faramesh.effect": row.decision,
            "faramesh.status": row.status,
            "faramesh.rule_id": row.rule_id or "default",
            "faramesh.risk": row.risk_level,
            "faramesh.agent_id": row.agent_id,
        },
    )
    span.end(time.time_ns())

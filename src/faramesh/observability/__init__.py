"""Metrics, traces and logs: what the service reports about what it does.

`Telemetry` is the one object the service calls after each committed change; it
feeds the Prometheus metrics, the decision spans and the per-event log line.
"""

from __future__ import annotations

# Aliased: the `logging` name in this package is the faramesh.observability.logging module.
import logging as std_logging
import time
from typing import Any

from faramesh.observability.metrics import Metrics
from faramesh.observability.tracing import Tracing, record_decision

events_log = std_logging.getLogger("faramesh.events")


class Telemetry:
    def __init__(self, metrics: Metrics | None = None, tracing: Tracing | None = None) -> None:
        self.metrics = metrics or Metrics()
        self.tracing = tracing

    def submitted(self, row: Any, started_ns: int) -> None:
        """After a new action was recorded: its decision span and the submit latency."""
        self.metrics.submit_seconds.observe((time.time_ns() - started_ns) / 1e9)
        record_decision(self.tracing, row, started_ns)

    def changed(self, event_type: str, row: Any) -> None:
        """After any committed state change of an action."""
        self.metrics.changed(event_type, row)
        if events_log.isEnabledFor(std_logging.INFO):
            events_log.info(
                "%s %s %s",
                event_type,
                row.id,
                row.status,
                extra={
                    "action_id": row.id,
                    "event": event_type,
                    "status": row.status,
                    "tool": row.tool,
                    "operation": row.operation,
                    "rule_id": row.rule_id,
                    "agent_id": row.agent_id,
                },
            )


__all__ = ["Metrics", "Telemetry", "Tracing"]

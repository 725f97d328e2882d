"""Prometheus metrics, served at /metrics.

Each app owns a `CollectorRegistry`, so several apps in one process (tests, embedding)
never collide on metric names. Recording is a counter increment or a histogram
observation after the transaction commits: it costs microseconds on the hot path.
The pending gauge is computed from the database at scrape time, so it is right for
the whole cluster whichever replica is scraped.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from faramesh import __version__

log = logging.getLogger("faramesh.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Tool names come from agents. Past this many distinct values new ones are counted
# under "other", so a misbehaving agent cannot grow the metric without bound.
MAX_TOOL_LABELS = 200
OTHER = "other"

# The route label of a request that matched no route, so probes of random paths add no series.
UNMATCHED_ROUTE = "unmatched"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
SUBMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
APPROVAL_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)

# Events that end an approval wait, and the outcome label each one records.
_DECIDED = {"action.approved": "approved", "action.denied": "denied", "action.expired": "expired"}

WEBHOOK_OUTCOMES = ("delivered", "failed")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.decisions = Counter(
            "faramesh_decisions",
            "Recorded decisions on submitted actions, by effect, tool and policy rule",
            ["effect", "tool", "rule"],
            registry=r,
        )
        self.submit_seconds = Histogram(
            "faramesh_submit_seconds",
            "Time to validate, evaluate and durably record a submitted action",
            buckets=SUBMIT_BUCKETS,
            registry=r,
        )
        self.pending = Gauge("faramesh_pending_actions", "Actions waiting for a human decision", registry=r)
        self.approval_seconds = Histogram(
            "faramesh_approval_seconds",
            "Time from submission to the decision on actions that needed approval",
            ["outcome"],
            buckets=APPROVAL_BUCKETS,
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "faramesh_webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered or failed)",
            ["outcome"],
            registry=r,
        )
        self.policy_reloads = Counter(
            "faramesh_policy_reloads",
            "Policy reloads, by outcome (applied or rejected)",
            ["outcome"],
            registry=r,
        )
        self.shadow_decisions = Counter(
            "faramesh_shadow_decisions",
            "Shadow-policy decisions beside the active policy's, by both effects (they diverge where they differ)",
            ["active", "shadow"],
            registry=r,
        )
        self.http_requests = Counter(
            "faramesh_http_requests",
            "HTTP requests answered, by method, route template (e.g. /v1/actions/{action_id}) and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "faramesh_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method and route template "
            "(long polls and event streams included: filter them by route)",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        Info("faramesh_build", "Faramesh version", registry=r).info({"version": __version__})
        # The standard process_* (CPU, memory, open files, start time) and python_* families,
        # in this registry since each app has its own.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_deliveries.labels(outcome)
        for outcome in ("applied", "rejected"):
            self.policy_reloads.labels(outcome)
        self._tools: set[str] = set()
        self._tools_lock = threading.Lock()

    # -- recording ---------------------------------------------------------------
    def _tool_label(self, tool: str) -> str:
        if tool in self._tools:
            return tool
        with self._tools_lock:
            if len(self._tools) >= MAX_TOOL_LABELS:
                return OTHER
            self._tools.add(tool)
        return tool

    def decision(self, effect: str, tool: str, rule_id: str | None) -> None:
        self.decisions.labels(effect, self._tool_label(tool), rule_id or "default").inc()

    def changed(self, event_type: str, row: Any) -> None:
        """Record what a committed state change means for the metrics."""
        if event_type == "action.created":
            self.decision(row.decision, row.tool, row.rule_id)
            return
        outcome = _DECIDED.get(event_type)
        if outcome is not None and row.decision == "require_approval":
            self.approval_seconds.labels(outcome).observe(max(0.0, float(row.updated_at) - float(row.created_at)))

    def http_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """Count one answered HTTP request; `route` is the matched template, None if none matched."""
        method = method if method in HTTP_METHODS else "other"
        route = route or UNMATCHED_ROUTE
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_seconds.labels(method, route).observe(seconds)

    def webhook_delivery(self, outcome: str) -> None:
        """Count one webhook delivery attempt: "delivered" or "failed"."""
        self.webhook_deliveries.labels(outcome if outcome in WEBHOOK_OUTCOMES else "failed").inc()

    def shadow(self, active: str, shadow: str) -> None:
        """Count one shadow decision next to the active policy's."""
        self.shadow_decisions.labels(active, shadow).inc()

    def policy_reload(self, applied: bool) -> None:
        self.policy_reloads.labels("applied" if applied else "rejected").inc()

    # -- exposition ----------------------------------------------------------------
    def count_pending_with(self, count: Callable[[], int]) -> None:
        """Compute the pending gauge with `count()` at each scrape."""

        def value() -> float:
            try:
                return float(count())
            except Exception:  # a scrape must not fail because the database blinked
                log.warning("could not count pending actions for /metrics", exc_info=True)
                return math.nan

        self.pending.set_function(value)

    def render(self) -> bytes:
        """The text exposition format; may query the database, so call it off the event loop."""
        return generate_latest(self.registry)

"""What the sync and async clients share: every request they build and every answer
they parse, with no I/O (httpx's own BaseClient → Client / AsyncClient pattern).

A client method asks `BaseClient` for an `APIRequest`, sends it with its own httpx
client (blocking or awaited) and hands the response back to `BaseClient.parse`,
which raises the typed error or returns the JSON. So the two clients cannot drift:
a path, a body, a header or an error mapping exists once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from faramesh import __version__
from faramesh.config import client_key, client_url
from faramesh.sdk.errors import FarameshConnectionError, RateLimitError, ServerError, error_for

PENDING = "pending_approval"
# Longest single long-poll; the wait endpoint answers at this point with the pending action.
WAIT_SLICE = 30.0


@dataclass(frozen=True)
class APIRequest:
    """One call to the API, ready to send."""

    method: str
    path: str
    timeout: float | httpx.Timeout
    params: dict[str, Any] | None = None
    json: Any = None  # None sends no body
    headers: dict[str, str] | None = None
    unwrap: str | None = None  # answer with this field of the JSON body instead of the whole body

    def send_args(self) -> dict[str, Any]:
        """Keyword arguments for httpx's `request` / `stream`."""
        return {
            "method": self.method,
            "url": self.path,
            "params": self.params,
            "json": self.json,
            "headers": self.headers,
            "timeout": self.timeout,
        }


def _seconds(value: str | None) -> float | None:
    """Retry-After in seconds, or None when absent or not a plain number (an HTTP
    date, or something odd): the RateLimitError is raised either way."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None


def raise_for_status(response: httpx.Response) -> None:
    """The typed FarameshAPIError for a 4xx/5xx answer (its body must have been read)."""
    if response.status_code < 400:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    err = error_for(response.status_code, body, response.text[:500])
    if isinstance(err, RateLimitError | ServerError):
        err.retry_after = _seconds(response.headers.get("Retry-After"))
    raise err


def sse_event(line: str) -> dict[str, Any] | None:
    """The event carried by one line of /v1/events; None for ids, comments and keep-alives."""
    if line.startswith("data:"):
        event: dict[str, Any] = orjson.loads(line[5:].strip())
        return event
    return None


def _submit_body(
    tool: str,
    operation: str,
    params: dict[str, Any] | None,
    context: dict[str, Any] | None,
    agent_id: str | None,
    reattach: bool = True,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tool": tool,
        "operation": operation,
        "params": params or {},
        "context": context or {},
    }
    if agent_id is not None:
        body["agent_id"] = agent_id
    if not reattach:  # sent only when opting out, so older servers see the body they know
        body["reattach"] = False
    return body


class BaseClient:
    """Configuration, request building and response parsing for both clients."""

    def __init__(self, base_url: str | None, api_key: str | None, timeout: float) -> None:
        self.base_url = (base_url or client_url()).rstrip("/")
        self.api_key = api_key if api_key is not None else client_key()
        self.timeout = timeout

    def _default_headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"faramesh-python/{__version__}", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _unreachable(self, exc: httpx.TransportError) -> FarameshConnectionError:
        return FarameshConnectionError(f"cannot reach Faramesh at {self.base_url}: {exc}")

    def _parse(self, request: APIRequest, response: httpx.Response) -> Any:
        raise_for_status(response)
        body = response.json()
        return body[request.unwrap] if request.unwrap else body

    def _build(self, method: str, path: str, **kwargs: Any) -> APIRequest:
        return APIRequest(method, path, timeout=self.timeout, **kwargs)

    # -- one builder per endpoint -------------------------------------------------------
    def _submit_action_request(
        self,
        tool: str,
        operation: str,
        params: dict[str, Any] | None,
        context: dict[str, Any] | None,
        agent_id: str | None,
        idempotency_key: str | None,
        reattach: bool = True,
    ) -> APIRequest:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = _submit_body(tool, operation, params, context, agent_id, reattach)
        return self._build("POST", "/v1/actions", json=body, headers=headers)

    def _get_action_request(self, action_id: str) -> APIRequest:
        return self._build("GET", f"/v1/actions/{action_id}")

    def _report_result_request(self, action_id: str, success: bool, result: Any, error: str | None) -> APIRequest:
        body: dict[str, Any] = {"success": success}
        if result is not None:
            body["result"] = result
        if error is not None:
            body["error"] = error
        return self._build("POST", f"/v1/actions/{action_id}/result", json=body)

    def _list_actions_request(
        self, status: str | None, tool: str | None, agent_id: str | None, limit: int, cursor: str | None
    ) -> APIRequest:
        given = {"status": status, "tool": tool, "agent_id": agent_id, "limit": limit, "cursor": cursor}
        return self._build("GET", "/v1/actions", params={k: v for k, v in given.items() if v is not None})

    def _approve_action_request(
        self, action_id: str, reason: str | None, params: dict[str, Any] | None, request_hash: str | None
    ) -> APIRequest:
        body: dict[str, Any] = {"reason": reason}
        if params is not None:
            body["params"] = params
        if request_hash is not None:
            body["request_hash"] = request_hash
        return self._build("POST", f"/v1/actions/{action_id}/approve", json=body)

    def _deny_action_request(self, action_id: str, reason: str | None) -> APIRequest:
        return self._build("POST", f"/v1/actions/{action_id}/deny", json={"reason": reason})

    def _start_action_request(self, action_id: str) -> APIRequest:
        return self._build("POST", f"/v1/actions/{action_id}/start")

    def _heartbeat_request(self, action_id: str) -> APIRequest:
        return self._build("POST", f"/v1/actions/{action_id}/heartbeat")

    def _reconcile_request(
        self, action_id: str, outcome: str, reason: str | None, result: Any, error: str | None
    ) -> APIRequest:
        body: dict[str, Any] = {"outcome": outcome}
        for name, value in (("reason", reason), ("result", result), ("error", error)):
            if value is not None:
                body[name] = value
        return self._build("POST", f"/v1/actions/{action_id}/reconcile", json=body)

    def _permit_keys_request(self) -> APIRequest:
        return self._build("GET", "/v1/permits/keys")

    def _cancel_action_request(self, action_id: str, reason: str | None) -> APIRequest:
        return self._build("POST", f"/v1/actions/{action_id}/cancel", json={"reason": reason})

    def _get_action_events_request(self, action_id: str) -> APIRequest:
        return self._build("GET", f"/v1/actions/{action_id}/events", unwrap="events")

    def _wait_request(self, action_id: str, left: float) -> APIRequest:
        """One long-poll of at most WAIT_SLICE seconds, `left` being the caller's time left."""
        slice_ = max(0.0, min(WAIT_SLICE, left))
        return APIRequest(
            "GET",
            f"/v1/actions/{action_id}/wait",
            params={"timeout": round(slice_, 3)},
            timeout=slice_ + self.timeout,
        )

    @staticmethod
    def _waiting(action_id: str) -> str:
        return f"waiting for a decision on action {action_id}"

    @staticmethod
    def _wait_over(action: dict[str, Any], left: float) -> bool:
        """Whether wait_for_decision returns this answer: decided, or out of time."""
        return action.get("status") != PENDING or left <= 0

    def _decide_request(
        self, tool: str, operation: str, params: dict[str, Any] | None, context: dict[str, Any] | None
    ) -> APIRequest:
        return self._build("POST", "/v1/decide", json=_submit_body(tool, operation, params, context, None))

    def _get_policy_request(self) -> APIRequest:
        return self._build("GET", "/v1/policy")

    def _health_request(self) -> APIRequest:
        return self._build("GET", "/health")

    def _stream_events_request(self, last_event_id: str | None) -> APIRequest:
        # No read timeout: the stream stays open between events (the server sends keep-alives).
        headers = {"Last-Event-ID": last_event_id} if last_event_id else None
        return APIRequest("GET", "/v1/events", timeout=httpx.Timeout(self.timeout, read=None), headers=headers)

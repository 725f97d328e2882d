"""HTTP clients for the Faramesh server, sync and async, on httpx.

    from faramesh.sdk.client import ExecutionGovernorClient
    client = ExecutionGovernorClient()   # FARAMESH_URL and FARAMESH_API_KEY

Every method returns plain dicts as the server sent them. Errors raise: an API error
as a typed FarameshAPIError subclass, an unreachable server as
FarameshConnectionError. Nothing here ever reports an action as allowed on its own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TYPE_CHECKING, Any

import httpx

from faramesh import __version__
from faramesh.config import client_key, client_url
from faramesh.sdk.errors import FarameshConnectionError, RateLimitError, error_for

if TYPE_CHECKING:
    from faramesh.sdk.govern import GovernedAction

PENDING = "pending_approval"
# Longest single long-poll; the wait endpoint answers at this point with the pending action.
WAIT_SLICE = 30.0


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": f"faramesh-python/{__version__}", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    err = error_for(response.status_code, body, response.text[:500])
    if isinstance(err, RateLimitError):
        err.retry_after = _seconds(response.headers.get("Retry-After"))
    raise err


def _seconds(value: str | None) -> float | None:
    """Retry-After in seconds, or None when absent or not a plain number (an HTTP
    date, or something odd): the RateLimitError is raised either way."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None


def _submit_body(
    tool: str,
    operation: str,
    params: dict[str, Any] | None,
    context: dict[str, Any] | None,
    agent_id: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tool": tool,
        "operation": operation,
        "params": params or {},
        "context": context or {},
    }
    if agent_id is not None:
        body["agent_id"] = agent_id
    return body


def _approve_body(reason: str | None, params: dict[str, Any] | None, request_hash: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"reason": reason}
    if params is not None:
        body["params"] = params
    if request_hash is not None:
        body["request_hash"] = request_hash
    return body


def _list_params(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


class ExecutionGovernorClient:
    """Synchronous client."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = (base_url or client_url()).rstrip("/")
        self.api_key = api_key if api_key is not None else client_key()
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url, headers=_headers(self.api_key), timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ExecutionGovernorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        try:
            response = self._http.request(
                method, path, timeout=timeout if timeout is not None else self.timeout, **kwargs
            )
        except httpx.TransportError as exc:
            raise FarameshConnectionError(f"cannot reach Faramesh at {self.base_url}: {exc}") from exc
        _raise_for(response)
        return response.json()

    # -- the seed's three calls ------------------------------------------------
    def submit_action(
        self,
        tool: str,
        operation: str,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        *,
        agent_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submit an action; the returned dict's `status` is the decision."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._request(
            "POST",
            "/v1/actions",
            json=_submit_body(tool, operation, params, context, agent_id),
            headers=headers,
        )

    def get_action(self, action_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/actions/{action_id}")

    def report_result(
        self,
        action_id: str,
        success: bool,
        result: Any = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"success": success}
        if result is not None:
            body["result"] = result
        if error is not None:
            body["error"] = error
        return self._request("POST", f"/v1/actions/{action_id}/result", json=body)

    # -- more ------------------------------------------------------------------
    def list_actions(
        self,
        *,
        status: str | None = None,
        tool: str | None = None,
        agent_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page: {"actions": [...], "next_cursor": ...}."""
        params = _list_params(status=status, tool=tool, agent_id=agent_id, limit=limit, cursor=cursor)
        return self._request("GET", "/v1/actions", params=params)

    def iter_actions(self, **filters: Any) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = self.list_actions(cursor=cursor, **filters)
            yield from page["actions"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def approve_action(
        self,
        action_id: str,
        reason: str | None = None,
        params: dict[str, Any] | None = None,
        *,
        request_hash: str | None = None,
    ) -> dict[str, Any]:
        """Approve; with `params`, approve these edited arguments instead (the policy re-checks them).

        `request_hash` refuses the approval (409) if the action's arguments changed since you read it.
        """
        body = _approve_body(reason, params, request_hash)
        return self._request("POST", f"/v1/actions/{action_id}/approve", json=body)

    def deny_action(self, action_id: str, reason: str | None = None) -> dict[str, Any]:
        return self._request("POST", f"/v1/actions/{action_id}/deny", json={"reason": reason})

    def get_action_events(self, action_id: str) -> list[dict[str, Any]]:
        return self._request("GET", f"/v1/actions/{action_id}/events")["events"]

    def wait_for_decision(self, action_id: str, timeout: float = 300.0) -> dict[str, Any]:
        """Block until the action leaves pending_approval; return the updated action.

        Uses the server's long-poll, so it returns the moment someone decides. After
        `timeout` seconds it returns the action as it is (still pending): check
        `status` before executing.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            slice_ = max(0.0, min(WAIT_SLICE, left))
            action: dict[str, Any] = self._request(
                "GET",
                f"/v1/actions/{action_id}/wait",
                params={"timeout": round(slice_, 3)},
                timeout=slice_ + self.timeout,
            )
            if action.get("status") != PENDING or left <= 0:
                return action

    def govern(
        self,
        tool: str,
        operation: str,
        params: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = 300.0,
        agent_id: str | None = None,
    ) -> AbstractContextManager[GovernedAction]:
        """`with client.govern(tool=..., operation=..., params=...) as action:` runs the block
        only when the action is allowed or approved (ActionDenied / ApprovalTimeout otherwise),
        and reports success (with `action.result`) or the exception when the block ends.
        Use `action.params`: an approver may have changed them."""
        from faramesh.sdk.govern import governed_action

        return governed_action(self, tool, operation, params, context, timeout=timeout, agent_id=agent_id)

    def decide(
        self,
        tool: str,
        operation: str,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Dry run: what would the policy decide? Nothing is recorded."""
        return self._request("POST", "/v1/decide", json=_submit_body(tool, operation, params, context, None))

    def get_policy(self) -> dict[str, Any]:
        return self._request("GET", "/v1/policy")

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health")

    def stream_events(self, last_event_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield every state change as it happens (server-sent events)."""
        import orjson

        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        try:
            with self._http.stream(
                "GET", "/v1/events", headers=headers, timeout=httpx.Timeout(self.timeout, read=None)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        yield orjson.loads(line[5:].strip())
        except httpx.TransportError as exc:
            raise FarameshConnectionError(f"cannot reach Faramesh at {self.base_url}: {exc}") from exc


class AsyncExecutionGovernorClient:
    """Asynchronous client with the same methods as ExecutionGovernorClient."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = (base_url or client_url()).rstrip("/")
        self.api_key = api_key if api_key is not None else client_key()
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=_headers(self.api_key), timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncExecutionGovernorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(
                method, path, timeout=timeout if timeout is not None else self.timeout, **kwargs
            )
        except httpx.TransportError as exc:
            raise FarameshConnectionError(f"cannot reach Faramesh at {self.base_url}: {exc}") from exc
        _raise_for(response)
        return response.json()

    async def submit_action(
        self,
        tool: str,
        operation: str,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        *,
        agent_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self._request(
            "POST",
            "/v1/actions",
            json=_submit_body(tool, operation, params, context, agent_id),
            headers=headers,
        )

    async def get_action(self, action_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/v1/actions/{action_id}")

    async def report_result(
        self, action_id: str, success: bool, result: Any = None, error: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"success": success}
        if result is not None:
            body["result"] = result
        if error is not None:
            body["error"] = error
        return await self._request("POST", f"/v1/actions/{action_id}/result", json=body)

    async def list_actions(
        self,
        *,
        status: str | None = None,
        tool: str | None = None,
        agent_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        params = _list_params(status=status, tool=tool, agent_id=agent_id, limit=limit, cursor=cursor)
        return await self._request("GET", "/v1/actions", params=params)

    async def iter_actions(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        cursor = None
        while True:
            page = await self.list_actions(cursor=cursor, **filters)
            for action in page["actions"]:
                yield action
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def approve_action(
        self,
        action_id: str,
        reason: str | None = None,
        params: dict[str, Any] | None = None,
        *,
        request_hash: str | None = None,
    ) -> dict[str, Any]:
        return await self._request(
            "POST", f"/v1/actions/{action_id}/approve", json=_approve_body(reason, params, request_hash)
        )

    async def deny_action(self, action_id: str, reason: str | None = None) -> dict[str, Any]:
        return await self._request("POST", f"/v1/actions/{action_id}/deny", json={"reason": reason})

    async def get_action_events(self, action_id: str) -> list[dict[str, Any]]:
        body = await self._request("GET", f"/v1/actions/{action_id}/events")
        return body["events"]

    async def wait_for_decision(self, action_id: str, timeout: float = 300.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            slice_ = max(0.0, min(WAIT_SLICE, left))
            action: dict[str, Any] = await self._request(
                "GET",
                f"/v1/actions/{action_id}/wait",
                params={"timeout": round(slice_, 3)},
                timeout=slice_ + self.timeout,
            )
            if action.get("status") != PENDING or left <= 0:
                return action

    def govern(
        self,
        tool: str,
        operation: str,
        params: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = 300.0,
        agent_id: str | None = None,
    ) -> AbstractAsyncContextManager[GovernedAction]:
        """`async with client.govern(...) as action:`; see ExecutionGovernorClient.govern."""
        from faramesh.sdk.govern import agoverned_action

        return agoverned_action(self, tool, operation, params, context, timeout=timeout, agent_id=agent_id)

    async def decide(
        self,
        tool: str,
        operation: str,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return await self._request("POST", "/v1/decide", json=_submit_body(tool, operation, params, context, None))

    async def get_policy(self) -> dict[str, Any]:
        return await self._request("GET", "/v1/policy")

    async def health(self) -> dict[str, Any]:
        return await self._request("GET", "/health")

"""HTTP clients for the Faramesh server, sync and async, on httpx.

    from faramesh.sdk.client import ExecutionGovernorClient
    client = ExecutionGovernorClient()   # FARAMESH_URL and FARAMESH_API_KEY

Every method returns plain dicts as the server sent them. Errors raise: an API error
as a typed FarameshAPIError subclass, an unreachable server as
FarameshConnectionError. Nothing here ever reports an action as allowed on its own.

Both clients build their requests and parse the answers in `BaseClient` (base.py);
they only send, blocking or awaited. tests/sdk/test_parity.py keeps their public
methods the same.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

import httpx

from faramesh.sdk.base import PENDING as PENDING
from faramesh.sdk.base import WAIT_SLICE as WAIT_SLICE
from faramesh.sdk.base import APIRequest, BaseClient, raise_for_status, sse_event
from faramesh.sdk.base import _seconds as _seconds  # defined here before; still importable from here
from faramesh.sdk.errors import FarameshClientError
from faramesh.sdk.governed import (
    DEFAULT_ON_ABANDON,
    DEFAULT_TIMEOUT,
    GovernedAction,
    OnAbandon,
    agoverned_action,
    governed_action,
)
from faramesh.sdk.retry import next_delay


class ExecutionGovernorClient(BaseClient):
    """Synchronous client."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self._default_headers(), timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ExecutionGovernorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, request: APIRequest) -> Any:
        try:
            response = self._http.request(**request.send_args())
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return self._parse(request, response)

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
        reattach: bool = True,
    ) -> dict[str, Any]:
        """Submit an action; the returned dict's `status` is the decision.

        An identical call while an earlier one is still held (or approved and not yet
        run) returns that action with `reattached: True`; `reattach=False` always
        creates a new one."""
        return self._send(
            self._submit_action_request(tool, operation, params, context, agent_id, idempotency_key, reattach)
        )

    def get_action(self, action_id: str) -> dict[str, Any]:
        """The action as it is now."""
        return self._send(self._get_action_request(action_id))

    def report_result(
        self,
        action_id: str,
        success: bool,
        result: Any = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Report the outcome of an allowed or approved action (once, by its submitter)."""
        return self._send(self._report_result_request(action_id, success, result, error))

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
        return self._send(self._list_actions_request(status, tool, agent_id, limit, cursor))

    def iter_actions(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every matching action, following `next_cursor`."""
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
        return self._send(self._approve_action_request(action_id, reason, params, request_hash))

    def deny_action(self, action_id: str, reason: str | None = None) -> dict[str, Any]:
        """Deny; the reason is shown to the agent."""
        return self._send(self._deny_action_request(action_id, reason))

    def start_action(self, action_id: str) -> dict[str, Any]:
        """Take the single execution of an allowed or approved action before running it: it
        becomes `executing` with an execution lease. Only once: a second start raises
        ConflictError (409). Verify the action's `permit` first (faramesh.permit.verify_permit)."""
        return self._send(self._start_action_request(action_id))

    def heartbeat(self, action_id: str) -> dict[str, Any]:
        """Extend the execution lease of a started action while it runs; without a result or a
        heartbeat within the lease, its outcome becomes unknown."""
        return self._send(self._heartbeat_request(action_id))

    def reconcile(
        self,
        action_id: str,
        outcome: str,
        *,
        reason: str | None = None,
        result: Any = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Say what became of an action whose outcome is unknown: `outcome` is "succeeded" or
        "failed" (its submitting agent, or an approver or admin key)."""
        return self._send(self._reconcile_request(action_id, outcome, reason, result, error))

    def permit_keys(self) -> dict[str, Any]:
        """The server's public permit keys (JWKS), as faramesh.permit.verify_permit takes them."""
        return self._send(self._permit_keys_request())

    def cancel_action(self, action_id: str, reason: str | None = None) -> dict[str, Any]:
        """Withdraw an action this key submitted while it is held (or approved and not yet
        run): it becomes `cancelled`, and approving it afterwards is refused."""
        return self._send(self._cancel_action_request(action_id, reason))

    def get_action_events(self, action_id: str) -> list[dict[str, Any]]:
        """The action's audit trail."""
        return self._send(self._get_action_events_request(action_id))

    def wait_for_decision(self, action_id: str, timeout: float = 300.0) -> dict[str, Any]:
        """Block until the action leaves pending_approval; return the updated action.

        Uses the server's long-poll, so it returns the moment someone decides. After
        `timeout` seconds it returns the action as it is (still pending): check
        `status` before executing. A restart or an unreachable server is retried (backoff
        with jitter, honouring Retry-After) until `timeout`; then ServerUnavailable (an
        ApprovalTimeout and a FarameshConnectionError) is raised. Other errors raise at once.
        """
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            try:
                action: dict[str, Any] = self._send(self._wait_request(action_id, left))
            except FarameshClientError as exc:
                time.sleep(next_delay(exc, attempt, deadline, self._waiting(action_id), action_id=action_id))
                attempt += 1
                continue
            attempt = 0
            if self._wait_over(action, left):
                return action

    def govern(
        self,
        tool: str,
        operation: str,
        params: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        agent_id: str | None = None,
        on_abandon: OnAbandon = DEFAULT_ON_ABANDON,
    ) -> AbstractContextManager[GovernedAction]:
        """`with client.govern(tool=..., operation=..., params=...) as action:` runs the block
        only when the action is allowed or approved (ActionDenied / ApprovalTimeout otherwise),
        and reports success (with `action.result`) or the exception when the block ends.
        Use `action.params`: an approver may have changed them. `on_abandon`: "keep" (default)
        or "cancel" a held action when the wait ends without a decision."""
        return governed_action(
            self, tool, operation, params, context, timeout=timeout, agent_id=agent_id, on_abandon=on_abandon
        )

    def decide(
        self,
        tool: str,
        operation: str,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Dry run: what would the policy decide? Nothing is recorded."""
        return self._send(self._decide_request(tool, operation, params, context))

    def get_policy(self) -> dict[str, Any]:
        """The active policy."""
        return self._send(self._get_policy_request())

    def health(self) -> dict[str, Any]:
        """GET /health."""
        return self._send(self._health_request())

    def stream_events(self, last_event_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield every state change as it happens (server-sent events); with
        `last_event_id` (the last `seq` seen), first every change after it."""
        request = self._stream_events_request(last_event_id)
        try:
            with self._http.stream(**request.send_args()) as response:
                if response.status_code >= 400:
                    response.read()
                    raise_for_status(response)
                for line in response.iter_lines():
                    event = sse_event(line)
                    if event is not None:
                        yield event
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc


class AsyncExecutionGovernorClient(BaseClient):
    """Asynchronous client with the same methods as ExecutionGovernorClient, awaited."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._default_headers(), timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncExecutionGovernorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, request: APIRequest) -> Any:
        try:
            response = await self._http.request(**request.send_args())
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return self._parse(request, response)

    async def submit_action(
        self,
        tool: str,
        operation: str,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        *,
        agent_id: str | None = None,
        idempotency_key: str | None = None,
        reattach: bool = True,
    ) -> dict[str, Any]:
        """Submit an action; see ExecutionGovernorClient.submit_action."""
        return await self._send(
            self._submit_action_request(tool, operation, params, context, agent_id, idempotency_key, reattach)
        )

    async def get_action(self, action_id: str) -> dict[str, Any]:
        """The action as it is now."""
        return await self._send(self._get_action_request(action_id))

    async def report_result(
        self,
        action_id: str,
        success: bool,
        result: Any = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Report the outcome of an allowed or approved action (once, by its submitter)."""
        return await self._send(self._report_result_request(action_id, success, result, error))

    async def list_actions(
        self,
        *,
        status: str | None = None,
        tool: str | None = None,
        agent_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page: {"actions": [...], "next_cursor": ...}."""
        return await self._send(self._list_actions_request(status, tool, agent_id, limit, cursor))

    async def iter_actions(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Every matching action, following `next_cursor`."""
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
        """Approve; see ExecutionGovernorClient.approve_action."""
        return await self._send(self._approve_action_request(action_id, reason, params, request_hash))

    async def deny_action(self, action_id: str, reason: str | None = None) -> dict[str, Any]:
        """Deny; the reason is shown to the agent."""
        return await self._send(self._deny_action_request(action_id, reason))

    async def start_action(self, action_id: str) -> dict[str, Any]:
        """Take the single execution of an action; see ExecutionGovernorClient.start_action."""
        return await self._send(self._start_action_request(action_id))

    async def heartbeat(self, action_id: str) -> dict[str, Any]:
        """Extend the execution lease of a started action; see ExecutionGovernorClient.heartbeat."""
        return await self._send(self._heartbeat_request(action_id))

    async def reconcile(
        self,
        action_id: str,
        outcome: str,
        *,
        reason: str | None = None,
        result: Any = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Say what became of an action whose outcome is unknown; see ExecutionGovernorClient.reconcile."""
        return await self._send(self._reconcile_request(action_id, outcome, reason, result, error))

    async def permit_keys(self) -> dict[str, Any]:
        """The server's public permit keys (JWKS)."""
        return await self._send(self._permit_keys_request())

    async def cancel_action(self, action_id: str, reason: str | None = None) -> dict[str, Any]:
        """Withdraw a held action; see ExecutionGovernorClient.cancel_action."""
        return await self._send(self._cancel_action_request(action_id, reason))

    async def get_action_events(self, action_id: str) -> list[dict[str, Any]]:
        """The action's audit trail."""
        return await self._send(self._get_action_events_request(action_id))

    async def wait_for_decision(self, action_id: str, timeout: float = 300.0) -> dict[str, Any]:
        """Wait until the action leaves pending_approval; see ExecutionGovernorClient.wait_for_decision."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            try:
                action: dict[str, Any] = await self._send(self._wait_request(action_id, left))
            except FarameshClientError as exc:
                await asyncio.sleep(next_delay(exc, attempt, deadline, self._waiting(action_id), action_id=action_id))
                attempt += 1
                continue
            attempt = 0
            if self._wait_over(action, left):
                return action

    def govern(
        self,
        tool: str,
        operation: str,
        params: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        agent_id: str | None = None,
        on_abandon: OnAbandon = DEFAULT_ON_ABANDON,
    ) -> AbstractAsyncContextManager[GovernedAction]:
        """`async with client.govern(...) as action:`; see ExecutionGovernorClient.govern."""
        return agoverned_action(
            self, tool, operation, params, context, timeout=timeout, agent_id=agent_id, on_abandon=on_abandon
        )

    async def decide(
        self,
        tool: str,
        operation: str,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Dry run: what would the policy decide? Nothing is recorded."""
        return await self._send(self._decide_request(tool, operation, params, context))

    async def get_policy(self) -> dict[str, Any]:
        """The active policy."""
        return await self._send(self._get_policy_request())

    async def health(self) -> dict[str, Any]:
        """GET /health."""
        return await self._send(self._health_request())

    async def stream_events(self, last_event_id: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yield every state change as it happens; see ExecutionGovernorClient.stream_events."""
        request = self._stream_events_request(last_event_id)
        try:
            async with self._http.stream(**request.send_args()) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise_for_status(response)
                async for line in response.aiter_lines():
                    event = sse_event(line)
                    if event is not None:
                        yield event
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

"""The SDK retries what is safe to repeat when the server restarts or cannot be reached,
until the caller's deadline, and then fails closed."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from faramesh import govern
from faramesh.sdk.client import AsyncExecutionGovernorClient, ExecutionGovernorClient
from faramesh.sdk.errors import (
    ApprovalTimeout,
    FarameshConnectionError,
    NotFoundError,
    ServerError,
    ServerUnavailable,
)
from faramesh.sdk.retry import BACKOFF_CAP, backoff, retryable
from tests.conftest import ServerProcess

DRAINING = {"detail": "the server is restarting", "error": {"code": "server_draining", "message": "x", "field": None}}


class Flaky(httpx.BaseTransport):
    """Forwards to the real server, but fails the first matching requests as a restart would:
    `lose` sends the request and then loses the answer; `refuse` answers 503 + Retry-After."""

    def __init__(self, *, lose: str | None = None, refuse: str | None = None, times: int = 1) -> None:
        self.real = httpx.HTTPTransport()
        self.lose, self.refuse, self.left = lose, refuse, times
        self.seen: list[httpx.Request] = []

    def _hit(self, request: httpx.Request, what: str | None) -> bool:
        return what is not None and self.left > 0 and f"{request.method} {request.url.path}".endswith(what)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self._hit(request, self.refuse):
            self.left -= 1
            return httpx.Response(503, json=DRAINING, headers={"Retry-After": "0"})
        response = self.real.handle_request(request)
        if self._hit(request, self.lose):
            self.left -= 1
            response.read()
            raise httpx.ReadError("connection reset while reading the answer")
        return response


class AsyncFlaky(httpx.AsyncBaseTransport):
    def __init__(self, sync: Flaky) -> None:
        self.sync = sync

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response = await asyncio.to_thread(self.sync.handle_request, request)
        return httpx.Response(response.status_code, headers=response.headers, content=response.read())


def test_what_is_retried() -> None:
    assert retryable(FarameshConnectionError("down"))
    assert retryable(ServerError("x", status_code=503)) and retryable(ServerError("x", status_code=502))
    assert not retryable(ServerError("x", status_code=500))  # a bug: repeating it will not help
    assert not retryable(NotFoundError("x", status_code=404))
    for attempt in range(20):
        assert 0 < backoff(attempt) <= BACKOFF_CAP
    assert backoff(0, retry_after=7) >= 7  # the server's Retry-After is honoured


def test_wait_gives_up_at_its_deadline_and_fails_closed() -> None:
    client = ExecutionGovernorClient("http://127.0.0.1:9", "fm_x", timeout=2)
    started = time.monotonic()
    with pytest.raises(ServerUnavailable) as gave_up:
        client.wait_for_decision("a1", timeout=1.0)
    assert 1.0 <= time.monotonic() - started < 5
    assert isinstance(gave_up.value, ApprovalTimeout) and isinstance(gave_up.value, FarameshConnectionError)
    assert gave_up.value.action_id == "a1"


def test_wait_retries_a_503_and_returns_the_decision(server: ServerProcess) -> None:
    agent_key, approver_key = server.create_key("agent"), server.create_key("approver")
    flaky = Flaky(refuse="/wait", times=2)
    with (
        ExecutionGovernorClient(server.url, agent_key, transport=flaky) as agent,
        ExecutionGovernorClient(server.url, approver_key) as person,
    ):
        action = agent.submit_action("refund", "process", {"amount": 500})
        person.approve_action(action["id"], "ok")
        assert agent.wait_for_decision(action["id"], timeout=30)["status"] == "approved"
    assert flaky.left == 0 and sum(r.url.path.endswith("/wait") for r in flaky.seen) == 3


def test_govern_retries_a_submit_whose_answer_was_lost_without_a_second_action(server: ServerProcess) -> None:
    key = server.create_key("agent")
    bot = f"lost-{uuid.uuid4().hex[:8]}"
    flaky = Flaky(lose="POST /v1/actions")
    calls: list[float] = []

    @govern(
        tool="refund",
        operation="process",
        agent_id=bot,
        timeout=30,
        client=ExecutionGovernorClient(server.url, key, transport=flaky),
    )
    def refund(amount: float) -> str:
        calls.append(amount)
        return "ok"

    assert refund(5) == "ok" and calls == [5]
    submits = [r for r in flaky.seen if r.method == "POST" and r.url.path == "/v1/actions"]
    assert len(submits) == 2 and submits[0].headers["Idempotency-Key"] == submits[1].headers["Idempotency-Key"]
    with ExecutionGovernorClient(server.url, key) as client:
        actions = client.list_actions(agent_id=bot)["actions"]
    assert len(actions) == 1 and actions[0]["status"] == "succeeded"


def test_async_govern_retries_the_same_way(server: ServerProcess) -> None:
    key = server.create_key("agent")
    bot = f"alost-{uuid.uuid4().hex[:8]}"
    flaky = Flaky(lose="POST /v1/actions")
    calls: list[float] = []

    async def scenario() -> Any:
        async with AsyncExecutionGovernorClient(server.url, key, transport=AsyncFlaky(flaky)) as client:

            @govern(tool="refund", operation="process", agent_id=bot, timeout=30, client=client)
            async def refund(amount: float) -> str:
                calls.append(amount)
                return "ok"

            return await refund(6)

    assert asyncio.run(scenario()) == "ok" and calls == [6]
    with ExecutionGovernorClient(server.url, key) as client:
        assert len(client.list_actions(agent_id=bot)["actions"]) == 1


def test_submit_action_alone_is_not_retried() -> None:
    # Without an Idempotency-Key a repeat could create a second action: the error surfaces.
    client = ExecutionGovernorClient("http://127.0.0.1:9", "fm_x", timeout=2)
    started = time.monotonic()
    with pytest.raises(FarameshConnectionError):
        client.submit_action("refund", "process", {"amount": 1})
    assert time.monotonic() - started < 2

"""`govern` and the integrations check the permit against the arguments they are about
to run and take the single start before the code runs; a permit for other arguments, or
a start someone else took, means the code never runs. The real app in-process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from faramesh.sdk.client import AsyncExecutionGovernorClient, ExecutionGovernorClient
from faramesh.sdk.errors import ActionDenied, ConflictError
from faramesh.sdk.govern import claim, govern
from tests.inprocess import InProcessServer
from tests.permits.support import LARGE, SMALL, events, get, keys, post, submit

pytestmark = pytest.mark.backends("sqlite", "postgresql")


@pytest.fixture
def app(make_client: Any) -> InProcessServer:
    server: InProcessServer = make_client(rate_limit=None)
    return server


def client_for(app: InProcessServer, key: str) -> ExecutionGovernorClient:
    return ExecutionGovernorClient(app.url, key, transport=app.transport)


def test_govern_verifies_the_permit_and_starts_once_before_running(app: InProcessServer) -> None:
    agent = keys(app)["agent"]
    ran: list[float] = []

    @govern(tool="refund", operation="process", client=client_for(app, agent))
    def refund(amount: float, customer_id: str) -> dict[str, Any]:
        ran.append(amount)
        return {"refunded": amount}

    assert refund(amount=50, customer_id="cus_1") == {"refunded": 50}
    assert ran == [50]
    [action] = app.get("/v1/actions", headers={"Authorization": f"Bearer {agent}"}).json()["actions"]
    assert action["status"] == "succeeded"
    trail = [e["event"] for e in events(app, action["id"])]
    assert trail == ["action.submitted", "action.started", "action.succeeded"]


def test_a_permit_for_other_arguments_never_runs_and_never_starts(app: InProcessServer) -> None:
    agent = keys(app)["agent"]
    client = client_for(app, agent)
    action = submit(app, agent, SMALL)
    assert action["status"] == "allowed" and action["permit"]
    tampered = {**SMALL["params"], "amount": 99}  # what a confused or hostile caller would run
    with pytest.raises(ActionDenied) as info:
        claim(client, action, "refund", "process", tampered)
    assert "permit does not allow this call" in str(info.value) and "arguments differ" in str(info.value)
    with pytest.raises(ActionDenied):
        claim(client, action, "refund", "delete", SMALL["params"])
    assert get(app, agent, action["id"])["status"] == "allowed"  # not started: nothing ran


def test_a_start_someone_else_took_means_the_code_does_not_run(app: InProcessServer) -> None:
    k = keys(app)
    agent = k["agent"]
    action = submit(app, agent, LARGE)
    assert post(app, f"/v1/actions/{action['id']}/approve", k["approver"]).status_code == 200
    approved = get(app, agent, action["id"])
    assert post(app, f"/v1/actions/{approved['id']}/start", agent).status_code == 200  # the other call ran it
    with pytest.raises(ConflictError):
        claim(client_for(app, agent), approved, "refund", "process", LARGE["params"])
    assert get(app, agent, action["id"])["status"] == "executing"


def test_the_async_path_checks_and_starts_too(app: InProcessServer) -> None:
    agent = keys(app)["agent"]
    ran: list[float] = []
    client = AsyncExecutionGovernorClient(app.url, agent, transport=_AsyncBridge(app))  # type: ignore[arg-type]

    @govern(tool="refund", operation="process", client=client)
    async def refund(amount: float, customer_id: str) -> str:
        ran.append(amount)
        return "ok"

    assert asyncio.run(refund(amount=40, customer_id="cus_9")) == "ok"
    assert ran == [40]
    [action] = app.get("/v1/actions", headers={"Authorization": f"Bearer {agent}"}).json()["actions"]
    assert [e["event"] for e in events(app, action["id"])][-2:] == ["action.started", "action.succeeded"]


class _AsyncBridge:
    """httpx's async transport interface over the in-process app's sync transport."""

    def __init__(self, app: InProcessServer) -> None:
        self.app = app

    async def handle_async_request(self, request: Any) -> Any:
        import anyio

        content = await request.aread()
        sync_request = type(request)(request.method, request.url, headers=request.headers, content=content)
        response = await anyio.to_thread.run_sync(self.app.transport.handle_request, sync_request)
        return response

    async def aclose(self) -> None:
        return None

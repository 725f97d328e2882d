"""Two replicas on one PostgreSQL database behind one address (a real TCP forwarder that
sends each new connection to the first replica that accepts). An SDK `wait_for_decision`
and a `govern`-decorated function wait on replica A; A stops (SIGTERM, or killed); their
next connection lands on B, and they get the approval a person makes on B. The function
runs once and nothing is submitted twice."""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from faramesh import govern
from faramesh.sdk.client import ExecutionGovernorClient
from tests.conftest import ServerProcess
from tests.inprocess import poll
from tests.integrations.conftest import POLICY
from tests.replicas.tcp_proxy import FirstUpProxy

pytestmark = pytest.mark.backends("postgresql")

WAIT = 90.0  # the waiters' own deadline: far beyond the hand-over


def _thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


@pytest.fixture
def replicas(pg_url: str, start_server: Callable[..., ServerProcess]) -> tuple[ServerProcess, ServerProcess]:
    a = start_server(policy=POLICY, database_url=pg_url)
    b = start_server(policy=POLICY, database_url=pg_url)
    b.admin_key = a.admin_key  # one database: the first start created the admin key
    return a, b


@pytest.fixture
def proxy(replicas: tuple[ServerProcess, ServerProcess]) -> Iterator[FirstUpProxy]:
    with FirstUpProxy([replicas[0].port, replicas[1].port]) as forwarder:
        yield forwarder


@pytest.mark.parametrize("stop", ["sigterm", "kill"])
def test_waits_move_to_the_other_replica_and_get_its_approval(
    replicas: tuple[ServerProcess, ServerProcess], proxy: FirstUpProxy, stop: str
) -> None:
    a, b = replicas
    agent_key, approver_key = a.create_key("agent"), a.create_key("approver")
    run = uuid.uuid4().hex[:8]
    bots = {"wait": f"wait-{run}", "govern": f"govern-{run}"}

    agent = ExecutionGovernorClient(proxy.url, agent_key)
    held = agent.submit_action("refund", "process", {"amount": 500}, agent_id=bots["wait"])
    waiter, waited = _thread(lambda: agent.wait_for_decision(held["id"], timeout=WAIT))

    refunds: list[float] = []

    @govern(
        tool="refund",
        operation="process",
        agent_id=bots["govern"],
        timeout=WAIT,
        client=ExecutionGovernorClient(proxy.url, agent_key),
    )
    def refund(amount: float) -> str:
        refunds.append(amount)
        return f"refunded {amount}"

    governed, governed_out = _thread(lambda: refund(700))

    with ExecutionGovernorClient(b.url, approver_key) as person:

        def waiting(bot: str) -> str | None:
            for listed in person.list_actions(status="pending_approval", agent_id=bot)["actions"]:
                if person.get_action(listed["id"])["presence"]["agent_waiting"]:
                    return str(listed["id"])
            return None

        ids = {name: poll(lambda bot=bot: waiting(bot), timeout=30) for name, bot in bots.items()}
        assert set(proxy.routed) == {a.port}, "everything went to replica A while it was up"

        assert a.proc is not None
        if stop == "sigterm":
            a.proc.send_signal(signal.SIGTERM)  # open waits get 503 + Retry-After
            a.proc.wait(timeout=15)
        else:
            a.kill9()  # open connections are cut

        for action_id in ids.values():
            assert person.approve_action(action_id, "approved on B")["status"] == "approved"
        for thread in (waiter, governed):
            thread.join(timeout=WAIT)
            assert not thread.is_alive()

        assert "error" not in waited, waited
        assert waited["value"]["status"] == "approved" and waited["value"]["id"] == ids["wait"]
        assert "error" not in governed_out, governed_out
        assert governed_out["value"] == "refunded 700" and refunds == [700]
        assert proxy.routed[-1] == b.port, "the waits moved to replica B"
        # One action per agent (no second submit), the governed one ran and was reported once.
        for name, bot in bots.items():
            assert [x["id"] for x in person.list_actions(agent_id=bot)["actions"]] == [ids[name]]
        assert person.get_action(ids["govern"])["status"] == "succeeded"
        assert person.get_action(ids["wait"])["approval"]["picked_up_at"] is not None
    agent.close()

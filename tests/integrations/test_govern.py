"""`govern` (decorator and context manager) against the real server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from faramesh import (
    ActionDenied,
    ApprovalTimeout,
    AsyncExecutionGovernorClient,
    ExecutionGovernorClient,
    govern,
)
from faramesh.sdk.errors import FarameshConnectionError
from tests.conftest import ServerProcess
from tests.integrations.conftest import Approver


@pytest.fixture
def bot() -> str:
    return f"bot-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(gov_server: ServerProcess, agent_key: str) -> ExecutionGovernorClient:
    return ExecutionGovernorClient(gov_server.url, agent_key)


def last_action(client: ExecutionGovernorClient, bot: str) -> dict[str, Any]:
    actions = client.list_actions(agent_id=bot, limit=5)["actions"]
    assert actions, f"no action recorded for {bot}"
    return client.get_action(actions[0]["id"])


def test_allowed_call_runs_once_and_reports_its_result(client: ExecutionGovernorClient, bot: str) -> None:
    calls: list[tuple[float, str]] = []

    @govern(tool="refund", operation="process", client=client, agent_id=bot)
    def refund_customer(amount: float, customer_id: str = "c1") -> dict[str, Any]:
        calls.append((amount, customer_id))
        return {"refunded": amount, "customer": customer_id}

    assert refund_customer(40, customer_id="c9") == {"refunded": 40, "customer": "c9"}
    assert calls == [(40, "c9")]
    action = last_action(client, bot)
    assert action["params"] == {"amount": 40, "customer_id": "c9"}
    assert action["status"] == "succeeded"
    assert action["result"] == {"refunded": 40, "customer": "c9"}


def test_denied_call_never_runs(client: ExecutionGovernorClient, bot: str) -> None:
    calls: list[str] = []

    @govern(tool="user_management", operation="delete", client=client, agent_id=bot)
    def delete_user(user_id: str) -> bool:
        calls.append(user_id)
        return True

    with pytest.raises(ActionDenied) as denied:
        delete_user("u1")
    assert isinstance(denied.value, PermissionError)
    assert "Agents may not delete users" in str(denied.value)
    assert denied.value.status == "denied" and denied.value.action_id
    assert calls == []
    assert last_action(client, bot)["status"] == "denied"


def test_pending_call_runs_only_after_approval(client: ExecutionGovernorClient, approver: Approver, bot: str) -> None:
    calls: list[float] = []
    seen_while_pending: list[int] = []

    @govern(tool="refund", operation="process", client=client, agent_id=bot, timeout=30)
    def refund_customer(amount: float, customer_id: str) -> dict[str, Any]:
        calls.append(amount)
        return {"refunded": amount}

    approver.decide_next("refund", agent_id=bot, before=lambda a: seen_while_pending.append(len(calls)))
    assert refund_customer(150, "c2") == {"refunded": 150}
    approver.join()
    assert seen_while_pending == [0]  # nothing ran while the action waited for a person
    assert calls == [150]
    action = last_action(client, bot)
    assert action["status"] == "succeeded" and action["result"] == {"refunded": 150}


def test_pending_call_denied_by_a_person_never_runs(
    client: ExecutionGovernorClient, approver: Approver, bot: str
) -> None:
    calls: list[float] = []

    @govern(tool="refund", operation="process", client=client, agent_id=bot, timeout=30)
    def refund_customer(amount: float) -> None:
        calls.append(amount)

    approver.decide_next("refund", agent_id=bot, approve=False, reason="customer is a fraud risk")
    with pytest.raises(ActionDenied, match="fraud risk"):
        refund_customer(500)
    approver.join()
    assert calls == []


def test_no_decision_in_time_raises_approval_timeout(
    client: ExecutionGovernorClient, admin: ExecutionGovernorClient, bot: str
) -> None:
    calls: list[float] = []

    @govern(tool="refund", operation="process", client=client, agent_id=bot, timeout=1)
    def refund_customer(amount: float) -> None:
        calls.append(amount)

    with pytest.raises(ApprovalTimeout) as timed_out:
        refund_customer(999)
    assert isinstance(timed_out.value, TimeoutError)
    assert calls == []
    action = last_action(client, bot)
    assert action["status"] == "pending_approval" and timed_out.value.action_id == action["id"]
    # Approving it later does not run anything either: the call is over.
    admin.approve_action(action["id"])
    assert calls == []


def test_exception_is_reported_and_raised(client: ExecutionGovernorClient, bot: str) -> None:
    @govern(tool="refund", operation="process", client=client, agent_id=bot)
    def refund_customer(amount: float) -> None:
        raise RuntimeError("card processor down")

    with pytest.raises(RuntimeError, match="card processor down"):
        refund_customer(5)
    action = last_action(client, bot)
    assert action["status"] == "failed"
    assert action["error"] == "RuntimeError: card processor down"


def test_unreachable_server_fails_closed() -> None:
    calls: list[float] = []
    client = ExecutionGovernorClient("http://127.0.0.1:9", "fm_x", timeout=2)

    # Retried (a restart looks the same) until the deadline, then given up: nothing ran.
    @govern(tool="refund", operation="process", client=client, timeout=1)
    def refund_customer(amount: float) -> None:
        calls.append(amount)

    with pytest.raises(FarameshConnectionError):
        refund_customer(1)
    assert calls == []


def test_arguments_that_are_not_json_are_refused_before_submitting(client: ExecutionGovernorClient, bot: str) -> None:
    calls: list[Any] = []

    @govern(tool="refund", operation="process", client=client, agent_id=bot)
    def refund_customer(amount: float, note: Any = None) -> None:
        calls.append(amount)

    with pytest.raises(TypeError, match=r"params\.note is a object, which is not JSON-safe"):
        refund_customer(5, note=object())
    with pytest.raises(TypeError, match=r"params\.amount is nan"):
        refund_customer(float("nan"))
    assert calls == []
    assert client.list_actions(agent_id=bot)["actions"] == []


def test_defaults_varargs_and_methods_become_params(client: ExecutionGovernorClient, bot: str) -> None:
    class Billing:
        def __init__(self) -> None:
            self.done: list[Any] = []

        @govern(tool="refund", operation="process", client=client, agent_id=bot)
        def refund(self, amount: float, *tags: str, currency: str = "EUR", **extra: Any) -> str:
            self.done.append((amount, tags, currency, extra))
            return "ok"

    billing = Billing()
    assert billing.refund(10, "vip", "late", memo="sorry") == "ok"
    assert billing.done == [(10, ("vip", "late"), "EUR", {"memo": "sorry"})]
    assert last_action(client, bot)["params"] == {
        "amount": 10,
        "tags": ["vip", "late"],
        "currency": "EUR",
        "memo": "sorry",
    }


def test_default_client_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, gov_server: ServerProcess, agent_key: str, bot: str
) -> None:
    monkeypatch.setenv("FARAMESH_URL", gov_server.url)
    monkeypatch.setenv("FARAMESH_API_KEY", agent_key)

    @govern(tool="refund", operation="process", agent_id=bot)
    def refund_customer(amount: float) -> float:
        return amount * 2

    @govern(tool="refund", operation="process", agent_id=bot)
    async def refund_later(amount: float) -> float:
        return amount * 3

    assert refund_customer(4) == 8
    assert asyncio.run(refund_later(4)) == 12


def test_async_functions_are_governed(gov_server: ServerProcess, agent_key: str, approver: Approver, bot: str) -> None:
    calls: list[float] = []
    seen_while_pending: list[int] = []

    async def scenario() -> None:
        async with AsyncExecutionGovernorClient(gov_server.url, agent_key) as aclient:

            @govern(tool="refund", operation="process", client=aclient, agent_id=bot, timeout=30)
            async def refund_customer(amount: float) -> dict[str, float]:
                calls.append(amount)
                return {"refunded": amount}

            @govern(tool="user_management", operation="delete", client=aclient, agent_id=bot)
            async def delete_user(user_id: str) -> None:
                calls.append(-1)

            assert await refund_customer(20) == {"refunded": 20}
            approver.decide_next("refund", agent_id=bot, before=lambda a: seen_while_pending.append(len(calls)))
            assert await refund_customer(300) == {"refunded": 300}
            with pytest.raises(ActionDenied):
                await delete_user("u1")

    asyncio.run(scenario())
    approver.join()
    assert calls == [20, 300]
    assert seen_while_pending == [1]


def test_async_function_with_a_sync_client(client: ExecutionGovernorClient, bot: str) -> None:
    @govern(tool="refund", operation="process", client=client, agent_id=bot)
    async def refund_customer(amount: float) -> float:
        return amount

    assert asyncio.run(refund_customer(7)) == 7
    assert last_action(client, bot)["status"] == "succeeded"


def test_async_client_cannot_govern_sync_function(gov_server: ServerProcess) -> None:
    aclient = AsyncExecutionGovernorClient(gov_server.url, "fm_x")
    with pytest.raises(TypeError, match="AsyncExecutionGovernorClient"):

        @govern(tool="refund", operation="process", client=aclient)
        def refund_customer(amount: float) -> None: ...


# -- the context manager ---------------------------------------------------------------------
def test_context_manager_reports_success_with_result(client: ExecutionGovernorClient, bot: str) -> None:
    with client.govern(tool="refund", operation="process", params={"amount": 30}, agent_id=bot) as action:
        assert action.status == "allowed" and action.params == {"amount": 30}
        action.result = {"refunded": action.params["amount"]}
    got = client.get_action(action.id)
    assert got["status"] == "succeeded" and got["result"] == {"refunded": 30}


def test_context_manager_reports_the_exception(client: ExecutionGovernorClient, bot: str) -> None:
    with (
        pytest.raises(ValueError, match="bad account"),
        client.govern(tool="refund", operation="process", params={"amount": 30}, agent_id=bot) as action,
    ):
        raise ValueError("bad account")
    got = client.get_action(action.id)
    assert got["status"] == "failed" and got["error"] == "ValueError: bad account"


def test_context_manager_body_never_runs_when_denied(client: ExecutionGovernorClient, bot: str) -> None:
    ran = []
    with (
        pytest.raises(ActionDenied, match="Agents may not delete users"),
        client.govern(tool="user_management", operation="delete", params={"user_id": "u1"}, agent_id=bot),
    ):
        ran.append(True)
    assert ran == []


def test_context_manager_waits_for_approval(client: ExecutionGovernorClient, approver: Approver, bot: str) -> None:
    ran: list[int] = []
    seen_while_pending: list[int] = []
    approver.decide_next("refund", agent_id=bot, before=lambda a: seen_while_pending.append(len(ran)))
    with client.govern("refund", "process", {"amount": 250}, agent_id=bot, timeout=30) as action:
        ran.append(1)
        assert action.status == "approved"
    approver.join()
    assert seen_while_pending == [0] and ran == [1]
    assert client.get_action(action.id)["status"] == "succeeded"


def test_async_context_manager(gov_server: ServerProcess, agent_key: str, bot: str) -> None:
    async def scenario() -> str:
        async with AsyncExecutionGovernorClient(gov_server.url, agent_key) as aclient:
            async with aclient.govern("refund", "process", {"amount": 3}, agent_id=bot) as action:
                action.result = "done"
            with pytest.raises(ActionDenied):
                async with aclient.govern("user_management", "delete", {"user_id": "u"}, agent_id=bot):
                    raise AssertionError("must not run")
            return action.id

    action_id = asyncio.run(scenario())
    with ExecutionGovernorClient(gov_server.url, agent_key) as client:
        assert client.get_action(action_id)["result"] == "done"


# -- approved with changes -------------------------------------------------------------------
@pytest.mark.usefixtures("edited_approvals")
def test_function_runs_with_the_params_the_approver_settled_on(
    client: ExecutionGovernorClient, approver: Approver, bot: str
) -> None:
    calls: list[tuple[float, str]] = []

    @govern(tool="refund", operation="process", client=client, agent_id=bot, timeout=30)
    def refund_customer(amount: float, customer_id: str, note: tuple[str, ...] = ()) -> dict[str, Any]:
        calls.append((amount, customer_id))
        return {"refunded": amount}

    approver.decide_next("refund", agent_id=bot, params={"amount": 80, "customer_id": "c7", "note": ["partial"]})
    assert refund_customer(500, "c7") == {"refunded": 80}
    approver.join()
    assert calls == [(80, "c7")]
    action = last_action(client, bot)
    assert action["params"]["amount"] == 80 and action["original_params"]["amount"] == 500
    assert action["status"] == "succeeded" and action["result"] == {"refunded": 80}


@pytest.mark.usefixtures("edited_approvals")
def test_changed_params_that_do_not_fit_the_function_never_run(
    client: ExecutionGovernorClient, approver: Approver, bot: str
) -> None:
    calls: list[float] = []

    @govern(tool="refund", operation="process", client=client, agent_id=bot, timeout=30)
    def refund_customer(amount: float) -> None:
        calls.append(amount)

    approver.decide_next("refund", agent_id=bot, params={"amount": 50, "surprise": True})
    with pytest.raises(TypeError, match="surprise"):
        refund_customer(500)
    approver.join()
    assert calls == []
    assert last_action(client, bot)["status"] == "failed"


@pytest.mark.usefixtures("edited_approvals")
def test_context_manager_gives_the_approved_params(
    client: ExecutionGovernorClient, approver: Approver, bot: str
) -> None:
    approver.decide_next("refund", agent_id=bot, params={"amount": 60})
    with client.govern("refund", "process", {"amount": 600}, agent_id=bot, timeout=30) as action:
        assert action.params == {"amount": 60} and action.edited
        action.result = action.params["amount"]
    approver.join()
    assert client.get_action(action.id)["result"] == 60


def test_import_faramesh_stays_light_and_exports_resolve() -> None:
    import subprocess
    import sys

    code = (
        "import sys, faramesh\n"
        "assert 'httpx' not in sys.modules and 'faramesh.sdk.client' not in sys.modules, 'eager import'\n"
        "names = [getattr(faramesh, n) for n in faramesh.__all__]\n"
        "assert faramesh.govern is faramesh.sdk.govern.govern\n"
        "assert issubclass(faramesh.ActionDenied, PermissionError) and issubclass(faramesh.ApprovalTimeout, TimeoutError)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr

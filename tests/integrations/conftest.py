"""A real server with the integration policy, and a person who approves from another thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from faramesh.sdk.client import ExecutionGovernorClient
from tests.conftest import ServerProcess

POLICY = Path(__file__).parent / "policy.yaml"


@pytest.fixture(scope="module")
def gov_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("integrations")
    srv = ServerProcess(f"sqlite:///{tmp / 'faramesh.db'}", POLICY, cwd=tmp).start()
    yield srv
    srv.stop()


@dataclass
class Approver:
    """Decides the next pending action for a tool, as a person would from the dashboard.

    Before deciding it calls `before` (the test records what had run by then); the
    decision it made is kept in `decided`. With `params` it approves changed arguments.
    """

    client: ExecutionGovernorClient
    threads: list[threading.Thread] = field(default_factory=list)
    decided: list[dict[str, Any]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def decide_next(
        self,
        tool: str,
        *,
        approve: bool = True,
        agent_id: str | None = None,
        reason: str | None = None,
        params: dict[str, Any] | None = None,
        before: Callable[[dict[str, Any]], None] | None = None,
        timeout: float = 30.0,
    ) -> None:
        def work() -> None:
            try:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    page = self.client.list_actions(status="pending_approval", tool=tool, agent_id=agent_id, limit=1)
                    if page["actions"]:
                        action = page["actions"][0]
                        if before is not None:
                            before(action)
                        if params is not None:  # approve with changed arguments
                            self.decided.append(self.client.approve_action(action["id"], reason, params=params))
                        elif approve:
                            self.decided.append(self.client.approve_action(action["id"], reason=reason))
                        else:
                            self.decided.append(self.client.deny_action(action["id"], reason=reason))
                        return
                    time.sleep(0.05)
                raise AssertionError(f"no pending {tool} action appeared")
            except BaseException as exc:
                self.errors.append(exc)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=60)
        self.threads.clear()
        if self.errors:
            raise self.errors[0]


@pytest.fixture
def approver(gov_server: ServerProcess) -> Iterator[Approver]:
    client = ExecutionGovernorClient(gov_server.url, gov_server.create_key("approver"))
    person = Approver(client)
    yield person
    person.join()
    client.close()


@pytest.fixture
def agent_key(gov_server: ServerProcess) -> str:
    return gov_server.create_key("agent")


@pytest.fixture
def admin(gov_server: ServerProcess) -> Iterator[ExecutionGovernorClient]:
    assert gov_server.admin_key
    with ExecutionGovernorClient(gov_server.url, gov_server.admin_key) as client:
        yield client


@pytest.fixture(scope="module")
def edited_approvals(gov_server: ServerProcess) -> None:
    """Skip unless the server under test can approve changed arguments."""
    from faramesh.sdk.errors import ValidationError

    with (
        ExecutionGovernorClient(gov_server.url, gov_server.create_key("agent")) as agent,
        ExecutionGovernorClient(gov_server.url, gov_server.create_key("approver")) as person,
    ):
        pending = agent.submit_action("refund", "process", {"amount": 500}, {"agent_id": "probe"})
        try:
            person.approve_action(pending["id"], "probe", params={"amount": 90})
        except (ValidationError, TypeError) as exc:
            person.deny_action(pending["id"], reason="probe")
            pytest.skip(f"this server cannot approve changed params yet: {exc}")

"""Which submits share a transaction with others on PostgreSQL (`Store.write_grouped`):
only those that lock no row that exists already. A held action may re-attach to an
existing one or be approved by a standing grant, and limits update their counters, so
those are written alone (a group holds the audit head, and waiting for such a row while
holding it could deadlock with a transaction that holds the row and waits for the head).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from faramesh.cli.main import main
from faramesh.permit import read_permit
from faramesh.policy import Decision, Effect
from faramesh.service.permit_keys import RELOAD_INTERVAL
from faramesh.service.submit import locks_no_existing_row
from faramesh.storage import Store
from tests.conftest import auth
from tests.inprocess import IN_PROCESS_SECRET, FakeClock, InProcessServer


def _decision(effect: Effect, limits: tuple[Any, ...] = ()) -> Decision:
    return Decision(effect=effect, reason="r", risk="low", rule_id=None, approval=None, limits=limits)


def test_the_rule_of_what_may_be_grouped() -> None:
    assert locks_no_existing_row(_decision(Effect.ALLOW))
    assert locks_no_existing_row(_decision(Effect.DENY))
    assert locks_no_existing_row(_decision(Effect.DENY, limits=(object(),)))  # a denial reserves nothing
    assert not locks_no_existing_row(_decision(Effect.ALLOW, limits=(object(),)))
    assert not locks_no_existing_row(_decision(Effect.REQUIRE_APPROVAL))


def test_allowed_and_denied_submits_are_grouped_held_ones_are_not(
    make_client: Callable[..., InProcessServer], monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    app = make_client(rate_limit=None)
    writes: list[tuple[str, bool]] = []  # (the action's status, asked to be grouped)
    original = Store.write_async

    async def spy(self: Store, fn: Any, *, grouped: bool = False) -> Any:
        result = await original(self, fn, grouped=grouped)
        writes.append((result[0].status, grouped))
        return result

    monkeypatch.setattr(Store, "write_async", spy)
    key = app.create_key("agent")
    bodies = [
        {"tool": "refund", "operation": "process", "params": {"amount": 5}},
        {"tool": "user_management", "operation": "delete", "params": {}},
        {"tool": "refund", "operation": "process", "params": {"amount": 5000}},
    ]
    statuses = [app.post("/v1/actions", json=b, headers=auth(key)).json()["status"] for b in bodies]
    assert statuses == ["allowed", "denied", "pending_approval"]
    if backend == "postgresql":  # the writer thread's group, or a transaction of its own
        assert writes == [("allowed", True), ("denied", True), ("pending_approval", False)]
    else:  # SQLite groups every write on the event loop, whatever it locks (one writer)
        assert [status for status, _ in writes] == statuses


def test_a_submit_due_a_permit_key_reload_reads_the_keys_off_the_event_loop(
    make_client: Callable[..., InProcessServer], monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """Submits are prepared on the event loop; the permit keys are read again every
    RELOAD_INTERVAL (a rotation on another replica is picked up then). On PostgreSQL that
    read is a round trip, so a submit due a reload is prepared in a worker thread: the
    loop never waits on the database. The rotated key signs from then on."""
    app = make_client(rate_limit=None, clock=FakeClock())
    key = app.create_key("agent")
    body = {"tool": "refund", "operation": "process", "params": {"amount": 5}}
    first = app.post("/v1/actions", json=body, headers=auth(key)).json()
    reads_on_loop: list[bool] = []
    original = Store.read

    def spy(self: Store, fn: Any) -> Any:
        try:
            asyncio.get_running_loop()
            reads_on_loop.append(True)
        except RuntimeError:
            reads_on_loop.append(False)
        return original(self, fn)

    rotated = CliRunner().invoke(
        main,
        ["permits", "rotate-key", "--database-url", app.database_url],
        env={"FARAMESH_SECRET_KEY": IN_PROCESS_SECRET},
    )
    assert rotated.exit_code == 0, rotated.output
    monkeypatch.setattr(Store, "read", spy)
    app.advance(RELOAD_INTERVAL + 1)
    after = app.post("/v1/actions", json=body | {"params": {"amount": 6}}, headers=auth(key))
    assert after.status_code == 201, after.text
    assert read_permit(after.json()["permit"]).kid != read_permit(first["permit"]).kid
    assert reads_on_loop, "the keys were not read again"
    if backend == "postgresql":
        assert not any(reads_on_loop), "a database read ran on the event loop"

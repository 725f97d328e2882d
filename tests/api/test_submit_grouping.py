"""Which submits share a transaction with others on PostgreSQL (`Store.write_grouped`):
only those that lock no row that exists already. A held action may re-attach to an
existing one or be approved by a standing grant, and limits update their counters, so
those are written alone (a group holds the audit head, and waiting for such a row while
holding it could deadlock with a transaction that holds the row and waits for the head).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from faramesh.policy import Decision, Effect
from faramesh.service.submit import locks_no_existing_row
from faramesh.storage import Store
from tests.conftest import auth
from tests.inprocess import InProcessServer


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
    grouped: list[str] = []
    original = Store.write_grouped

    def spy(self: Store, fn: Any) -> Any:
        result = original(self, fn)
        grouped.append(result[0].status)
        return result

    monkeypatch.setattr(Store, "write_grouped", spy)
    key = app.create_key("agent")
    bodies = [
        {"tool": "refund", "operation": "process", "params": {"amount": 5}},
        {"tool": "user_management", "operation": "delete", "params": {}},
        {"tool": "refund", "operation": "process", "params": {"amount": 5000}},
    ]
    statuses = [app.post("/v1/actions", json=b, headers=auth(key)).json()["status"] for b in bodies]
    assert statuses == ["allowed", "denied", "pending_approval"]
    # SQLite groups every submit on the event loop (Store.write_async) instead.
    assert grouped == (["allowed", "denied"] if backend == "postgresql" else [])

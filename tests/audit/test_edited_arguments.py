"""An approval of edited arguments changes the action's params and request_hash; verify
follows the approval record, and still names a later change made behind its back."""

from __future__ import annotations

from faramesh.policy import Policy
from faramesh.service import Governor
from faramesh.service import keys as service_keys
from faramesh.storage import Store
from tests.audit.conftest import RELOADED_POLICY, Database
from tests.inprocess import IN_PROCESS_SECRET


def approve_with_edit(db: Database, action_id: str, params: dict[str, object]) -> None:
    store = Store(db.url)
    try:
        alice = next(k for k in service_keys.list_keys(store) if k.id == db.history.keys["alice"])
        Governor(store, Policy.from_yaml(RELOADED_POLICY), secret_key=IN_PROCESS_SECRET).approve(
            alice.identity(), action_id, reason="lowered", params=params
        )
    finally:
        store.close()


def test_approved_edit_verifies_and_a_later_change_is_named(db: Database) -> None:
    aid = db.history.actions["pending"]
    approve_with_edit(db, aid, {"amount": 800.5, "customer_id": "cus_5"})
    seq, event = db.one("SELECT seq, event FROM audit_log WHERE action_id = :a ORDER BY seq DESC LIMIT 1", a=aid)
    assert event == "action.approved"
    result = db.cli("audit", "verify")
    assert result.exit_code == 0, result.output

    db.sql("UPDATE actions SET params = :p WHERE id = :a", p='{"amount":8000.5,"customer_id":"cus_5"}', a=aid)
    result = db.cli("audit", "verify")
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith(
        f"audit state mismatch at seq {seq} (action {aid}): the action's arguments changed: request_hash "
        "recomputed from its tool, operation, params, context and agent_id is "
    )
    assert "its action.approved record says" in result.output.splitlines()[0]

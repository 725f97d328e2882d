"""Tamper with a real log directly in the database (SQLite file and PostgreSQL) and see
`faramesh audit verify` exit 1 naming the record and what does not match."""

from __future__ import annotations

import json

from faramesh import audit
from tests.audit.conftest import Database


def verify(db: Database, *args: str) -> tuple[int, list[str]]:
    result = db.cli("audit", "verify", *args)
    return result.exit_code, result.output.splitlines()


def record(db: Database, event: str, action: str | None = None) -> tuple[int, str | None]:
    """(seq, action_id) of the one record with this event (and action)."""
    if action is None:
        row = db.one("SELECT seq, action_id FROM audit_log WHERE event = :e", e=event)
    else:
        row = db.one("SELECT seq, action_id FROM audit_log WHERE event = :e AND action_id = :a", e=event, a=action)
    return int(row[0]), row[1]


def head_seq(db: Database) -> int:
    return int(db.one("SELECT seq FROM audit_head")[0])


def test_untouched_log_is_intact(db: Database) -> None:
    code, lines = verify(db)
    seq, digest = db.one("SELECT seq, hash FROM audit_head")
    assert code == 0, lines
    assert lines[0] == f"audit log intact: {seq} records, head seq {seq} hash {digest}"
    assert lines[1] == "7 action(s) and 4 key(s) match their records"


def test_altered_record_is_named(db: Database) -> None:
    aid = db.history.actions["approved"]
    seq, _ = record(db, "action.approved", aid)
    db.sql("UPDATE audit_log SET data = replace(data, 'checked the ticket', 'no ticket') WHERE seq = :s", s=seq)
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == f"audit chain broken at seq {seq} (action {aid}): hash mismatch — record was altered"
    assert lines[-1].startswith("audit log NOT intact: 1 problem(s)")


def test_altered_actor_is_named(db: Database) -> None:
    aid = db.history.actions["denied"]
    seq, _ = record(db, "action.denied", aid)
    db.sql("UPDATE audit_log SET actor = 'key:0000 (someone else)' WHERE seq = :s", s=seq)
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == f"audit chain broken at seq {seq} (action {aid}): hash mismatch — record was altered"


def test_altered_timestamp_is_named(db: Database) -> None:
    seq, aid = record(db, "action.expired")
    db.sql("UPDATE audit_log SET ts = ts - 3600 WHERE seq = :s", s=seq)
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == f"audit chain broken at seq {seq} (action {aid}): hash mismatch — record was altered"


def test_record_resealed_with_new_hash_breaks_the_next_link(db: Database) -> None:
    aid = db.history.actions["approved"]
    seq, _ = record(db, "action.approved", aid)
    row = db.one("SELECT ts, event, action_id, actor, data, prev_hash FROM audit_log WHERE seq = :s", s=seq)
    data = json.loads(row.data) | {"reason": "rubber-stamped"}
    sealed = audit.seal(
        row.prev_hash, seq=seq, ts=row.ts, event=row.event, action_id=row.action_id, actor=row.actor, data=data
    )
    db.sql("UPDATE audit_log SET data = :d, hash = :h WHERE seq = :s", d=sealed["data"], h=sealed["hash"], s=seq)
    nxt_seq, nxt_action = db.one("SELECT seq, action_id FROM audit_log WHERE seq = :s", s=seq + 1)
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == (
        f"audit chain broken at seq {nxt_seq} (action {nxt_action}): prev_hash does not match the hash of "
        f"seq {seq} — seq {seq} was rewritten with a new hash, or a record was inserted"
    )


def test_deleted_record_is_named(db: Database) -> None:
    aid = db.history.actions["huge"]
    seq, _ = record(db, "action.approval_recorded", aid)
    db.sql("DELETE FROM audit_log WHERE seq = :s", s=seq)
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == f"audit chain broken at seq {seq}: seq {seq} missing before seq {seq + 1} — records were deleted"
    # The action it belonged to no longer matches its trail: two votes stored, one recorded.
    assert any(line.startswith("audit state mismatch") and f"(action {aid})" in line for line in lines)
    assert any("2 approval vote(s) stored but 1 recorded" in line for line in lines)


def test_deleted_last_record_is_named(db: Database) -> None:
    last = head_seq(db)
    _, aid = record(db, "action.expired")
    db.sql("DELETE FROM audit_log WHERE seq = :s", s=last)
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == (
        f"audit chain broken at seq {last}: seq {last} missing: the chain head says the log ends at seq {last} "
        "— the last records were deleted"
    )
    assert any(f"(action {aid}): status is 'denied' in the row" in line for line in lines)


def test_deleted_last_record_with_head_rolled_back_is_caught(db: Database) -> None:
    """Deleting the last record and moving the head back leaves a valid chain, but the
    action the record described no longer matches, and a checkpoint proves the loss."""
    taken = db.cli("audit", "checkpoint", "--json")
    cp = json.loads(taken.output)["checkpoint"]
    last = head_seq(db)
    _, aid = record(db, "action.expired")
    submitted, _ = record(db, "action.submitted", aid)
    db.sql("DELETE FROM audit_log WHERE seq = :s", s=last)
    prev = db.one("SELECT hash FROM audit_log WHERE seq = :s", s=last - 1)[0]
    db.sql("UPDATE audit_head SET seq = :s, hash = :h", s=last - 1, h=prev)
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == (
        f"audit state mismatch at seq {submitted} (action {aid}): status is 'denied' in the row but its last "
        "record (action.submitted) says 'pending_approval'"
    )
    code, lines = verify(db, "--checkpoint", cp)
    assert code == 1
    assert any(
        line.startswith(f"audit chain broken at seq {last}: checkpoint {last} is not in the log") for line in lines
    )


def test_reordered_records_are_named(db: Database) -> None:
    first, first_action = record(db, "action.submitted", db.history.actions["denied"])
    second, second_action = record(db, "action.submitted", db.history.actions["huge"])
    db.sql("UPDATE audit_log SET seq = -1 WHERE seq = :s", s=first)
    db.sql("UPDATE audit_log SET seq = :a WHERE seq = :b", a=first, b=second)
    db.sql("UPDATE audit_log SET seq = :b WHERE seq = -1", b=second)
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == (
        f"audit chain broken at seq {first} (action {second_action}): record was moved here from seq {second} "
        "— records were reordered"
    )
    assert any(
        line.startswith(
            f"audit chain broken at seq {second} (action {first_action}): record was moved here from seq {first}"
        )
        for line in lines
    )


def test_action_status_changed_in_the_row_is_named(db: Database) -> None:
    aid = db.history.actions["denied"]
    seq, _ = record(db, "action.denied", aid)
    db.sql("UPDATE actions SET status = 'approved' WHERE id = :a", a=aid)
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == (
        f"audit state mismatch at seq {seq} (action {aid}): status is 'approved' in the row but its last "
        "record (action.denied) says 'denied'"
    )


def test_action_params_changed_in_the_row_are_named(db: Database) -> None:
    aid = db.history.actions["huge"]
    # The approvals also name the request_hash they approved; the last one is compared.
    seq, _ = record(db, "action.approved", aid)
    db.sql("UPDATE actions SET params = replace(params, '5000', '50000') WHERE id = :a", a=aid)
    code, lines = verify(db)
    assert code == 1
    assert lines[0].startswith(
        f"audit state mismatch at seq {seq} (action {aid}): the action's arguments changed: request_hash "
        "recomputed from its tool, operation, params, context and agent_id is "
    )
    assert lines[0].endswith(
        "its action.approved record says "
        + db.one("SELECT request_hash FROM actions WHERE id = :a", a=aid)[0][:16]
        + "…"
    )


def test_context_changed_in_an_unapproved_row_is_named(db: Database) -> None:
    aid = db.history.actions["allowed"]
    seq, _ = record(db, "action.submitted", aid)
    db.sql("UPDATE actions SET context = :c WHERE id = :a", c='{"agent_id":"billing-bot"}', a=aid)
    code, lines = verify(db)
    assert code == 1
    assert lines[0].startswith(
        f"audit state mismatch at seq {seq} (action {aid}): the action's arguments changed: request_hash "
        "recomputed from its tool, operation, params, context and agent_id is "
    )
    assert "its action.submitted record says" in lines[0]


def test_params_and_request_hash_changed_together_are_named(db: Database) -> None:
    aid = db.history.actions["pending"]
    seq, _ = record(db, "action.submitted", aid)
    db.sql("UPDATE actions SET params = :p, request_hash = :h WHERE id = :a", p='{"amount":9}', a=aid, h="ab" * 32)
    code, lines = verify(db)
    assert code == 1
    assert lines[0].startswith(f"audit state mismatch at seq {seq} (action {aid}): request_hash is 'abababab")


def test_policy_decision_changed_in_the_row_is_named(db: Database) -> None:
    aid = db.history.actions["denied_by_policy"]
    seq, _ = record(db, "action.submitted", aid)
    db.sql("UPDATE actions SET decision = 'allow', status = 'allowed' WHERE id = :a", a=aid)
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == (
        f"audit state mismatch at seq {seq} (action {aid}): action row differs from its action.submitted "
        "record: decision is 'allow' in the row but 'deny' in the record"
    )
    assert f"audit state mismatch at seq {seq} (action {aid}): status is 'allowed' in the row" in lines[1]


def test_result_changed_in_the_row_is_named(db: Database) -> None:
    aid = db.history.actions["allowed"]
    seq, _ = record(db, "action.succeeded", aid)
    db.sql("UPDATE actions SET result = :r WHERE id = :a", r='{"refund_id":"re_1","amount":4250}', a=aid)
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == (
        f"audit state mismatch at seq {seq} (action {aid}): result or error in the row differs from its "
        "action.succeeded record"
    )


def test_deleted_action_row_is_named(db: Database) -> None:
    aid = db.history.actions["allowed"]
    seq, _ = record(db, "action.submitted", aid)
    db.sql("DELETE FROM actions WHERE id = :a", a=aid)
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == (
        f"audit state mismatch at seq {seq} (action {aid}): records exist for this action but its row is gone "
        "— it was deleted"
    )


def test_action_added_without_records_is_named(db: Database) -> None:
    source = db.history.actions["allowed"]
    db.sql(
        """INSERT INTO actions (id, status, decision, reason, risk_level, rule_id, policy_hash, request_hash,
               tool, operation, params, context, agent_id, submitted_by, approval_quorum, version,
               created_at, updated_at)
           SELECT 'forged-action', 'allowed', decision, reason, risk_level, rule_id, policy_hash, request_hash,
               tool, operation, params, context, agent_id, submitted_by, approval_quorum, version,
               created_at, updated_at
           FROM actions WHERE id = :a""",
        a=source,
    )
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == (
        "audit state mismatch (action forged-action): the action has no audit records — it was added outside "
        "the service, or its records deleted"
    )


def test_forged_approval_vote_is_named(db: Database) -> None:
    aid = db.history.actions["pending"]
    seq, _ = record(db, "action.submitted", aid)
    db.sql(
        """INSERT INTO approvals (action_id, approver, approver_label, approve, reason, request_hash, created_at)
           SELECT id, 'mallory', 'key:mallory', true, NULL, request_hash, created_at FROM actions WHERE id = :a""",
        a=aid,
    )
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == (
        f"audit state mismatch at seq {seq} (action {aid}): 1 approval vote(s) stored but 0 recorded — votes "
        "were added or removed"
    )


def test_escalated_key_role_is_named(db: Database) -> None:
    key = db.history.keys["agent"]
    seq = db.one("SELECT seq FROM audit_log WHERE event = 'key.created' AND data LIKE :k", k=f'%"{key}"%')[0]
    db.sql("UPDATE api_keys SET role = 'admin' WHERE id = :k", k=key)
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == (
        f"audit state mismatch at seq {seq} (key {key}): key differs from its key.created record: role is "
        "'admin' in the row but 'agent' in the record"
    )


def test_swapped_key_digest_is_named(db: Database) -> None:
    """Replacing a key's stored digest (to let another secret in) contradicts key.created."""
    key = db.history.keys["agent"]
    seq = db.one("SELECT seq FROM audit_log WHERE event = 'key.created' AND data LIKE :k", k=f'%"{key}"%')[0]
    db.sql("UPDATE api_keys SET key_hash = :h WHERE id = :k", h="f" * 64, k=key)
    code, lines = verify(db)
    assert code == 1
    assert lines[0].startswith(f"audit state mismatch at seq {seq} (key {key}): key differs from its key.created")
    assert "key_hash is" in lines[0]


def test_unrevoked_key_is_named(db: Database) -> None:
    key = db.history.keys["spare"]
    seq, _ = record(db, "key.revoked")
    db.sql("UPDATE api_keys SET revoked_at = NULL WHERE id = :k", k=key)
    code, lines = verify(db)
    assert code == 1
    assert (
        lines[0]
        == f"audit state mismatch at seq {seq} (key {key}): key is active in the row but its records say revoked"
    )


def test_key_added_without_record_is_named(db: Database) -> None:
    db.sql(
        """INSERT INTO api_keys (id, name, role, agent_id, groups, key_hash, prefix, created_at)
           VALUES ('backdoor', 'x', 'admin', NULL, '[]', :h, 'fm_x', 0)""",
        h="cd" * 32,
    )
    code, lines = verify(db)
    assert code == 1
    assert lines[0] == (
        "audit state mismatch (key backdoor): the key has no key.created record — it was added outside the service"
    )


def test_rewritten_tail_is_caught_only_against_a_checkpoint(db: Database) -> None:
    """Someone who re-seals every record after a change and moves the head leaves a
    self-consistent chain; the checkpoint kept elsewhere is what proves the rewrite."""
    cp = json.loads(db.cli("audit", "checkpoint", "--json").output)
    aid = db.history.actions["approved"]
    target, _ = record(db, "action.approved", aid)
    rows = db.sql(
        "SELECT seq, ts, event, action_id, actor, data, prev_hash FROM audit_log WHERE seq >= :s ORDER BY seq",
        s=target,
    )
    prev = rows[0].prev_hash
    for row in rows:
        data = json.loads(row.data)
        if row.seq == target:
            data["reason"] = "approved by the CFO"
        sealed = audit.seal(
            prev, seq=row.seq, ts=row.ts, event=row.event, action_id=row.action_id, actor=row.actor, data=data
        )
        db.sql(
            "UPDATE audit_log SET data = :d, prev_hash = :p, hash = :h WHERE seq = :s",
            d=sealed["data"],
            p=prev,
            h=sealed["hash"],
            s=row.seq,
        )
        prev = sealed["hash"]
    db.sql("UPDATE audit_head SET hash = :h", h=prev)
    code, lines = verify(db, "--checkpoint", cp["checkpoint"])
    assert code == 1
    assert lines[0].startswith(
        f"audit chain broken at seq {cp['seq']} (action {rows[-1].action_id}): its hash differs from checkpoint "
        f"{cp['seq']}:{cp['hash'][:16]}… — the log was rewritten after the checkpoint"
    )


def test_json_report_names_the_record(db: Database) -> None:
    aid = db.history.actions["approved"]
    seq, _ = record(db, "action.failed", aid)
    db.sql("UPDATE audit_log SET data = replace(data, 'card declined', 'ok') WHERE seq = :s", s=seq)
    result = db.cli("audit", "verify", "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False
    first = report["problems"][0]
    assert (first["seq"], first["action_id"], first["kind"]) == (seq, aid, "chain")
    assert first["message"] == "hash mismatch — record was altered"

"""Checking the state tables against the log: every action and key must be what its records say.

An action row must match its action.submitted record (decision, rule, tool, agent, ...),
carry the request_hash of the arguments in force and recompute to it, have the status
(and result) of its last record, as many approval votes as were recorded, and the permit
its records last issued (by SHA-256), made out for it; a start names a permit it was issued. A key
row must match its key.created record and be revoked exactly when a key.revoked record
says so. Rows without records, and records whose row is gone, are named too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from itertools import groupby
from operator import itemgetter
from typing import Any

import orjson

from faramesh.audit.report import Problem, VerifyReport
from faramesh.canonical import fast_canonical
from faramesh.permit import PermitError, read_permit
from faramesh.storage import audit_log
from faramesh.storage.audit_log import VOTES, Connection, KeyRow

# Events that record one approver's vote (the approvals table holds one row per vote).
_VOTE_EVENTS = frozenset({"action.approval_recorded", "action.approved", "action.denied"})
_RESULT_EVENTS = frozenset({"action.succeeded", "action.failed", "action.reconciled"})
_STARTED = "action.started"
# Fields of the submitted record (key, column) that must equal the action row's.
_SUBMITTED_FIELDS = (
    ("decision", "decision"),
    ("policy_hash", "policy_hash"),
    ("rule_id", "rule_id"),
    ("reason", "reason"),
    ("risk", "risk_level"),
    ("tool", "tool"),
    ("operation", "operation"),
    ("agent_id", "agent_id"),
)
_SUB_KEYS = tuple(key for key, _ in _SUBMITTED_FIELDS)
_N = len(_SUBMITTED_FIELDS)
# The action columns read, and their positions: _check_action reads by index, for speed.
_ACTION_COLUMNS = (
    "seq",
    "id",
    "status",
    "request_hash",
    *(column for _, column in _SUBMITTED_FIELDS),
    "params",
    "context",
    "result",
    "error",
    VOTES,
    "permit",
)
_ID, _STATUS, _HASH, _FIELDS0 = 1, 2, 3, 4
_PARAMS, _CONTEXT, _RESULT, _ERROR, _VOTES, _PERMIT = (_FIELDS0 + _N + i for i in range(6))
_AGENT, _TOOL, _OPERATION = (_FIELDS0 + _SUB_KEYS.index(k) for k in ("agent_id", "tool", "operation"))

# (seq, event, data) of one record
Rec = tuple[int, str, str]
Report = Callable[[int | None, str], None]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…'"


# -- actions -----------------------------------------------------------------------


def check_actions(conn: Connection, report: VerifyReport) -> int:
    """Compare every action row with its records; return how many records were read.

    Two streams in the order of the actions table, read at once in the same transaction
    (so from one snapshot): the action rows, and their records.
    """
    read = 0
    count = 0
    grouped = groupby(audit_log.stream_action_records(conn), key=itemgetter(0))
    current = next(grouped, None)
    for row in audit_log.stream_action_states(conn, _ACTION_COLUMNS):
        count += 1
        records: list[Rec] = []
        if current is not None and current[0] == row[0]:
            records = [(r[1], r[2], r[3]) for r in current[1]]
            current = next(grouped, None)
        read += len(records)
        _check_action(report, row, records)
    report.actions = count
    return read


def _check_action(report: VerifyReport, row: Any, records: list[Rec]) -> None:
    aid = row[_ID]

    def problem(seq: int | None, message: str) -> None:
        report.add(Problem(seq, message, aid, kind="state"))

    if not records:
        problem(None, "the action has no audit records — it was added outside the service, or its records deleted")
        return
    submitted = _submitted_record(records, problem)
    if submitted is None:
        return
    sub_seq, sub_text = submitted
    last_seq, last_event, last_text = records[-1]
    try:
        sub, last = _load_objects(sub_text, last_text)
    except ValueError as exc:
        problem(sub_seq, f"a record's data is {exc} — record was altered")
        return
    _check_submitted_fields(row, sub, sub_seq, problem)
    _check_request_hash(row, records, sub_seq, sub, problem)
    _check_status(row, last_seq, last_event, last, problem)
    _check_votes(row, records, last_seq, problem)
    if row[_PERMIT] is not None or any('"permit' in text for _, _, text in records):
        _check_permit(row, records, problem)


def _submitted_record(records: list[Rec], problem: Report) -> tuple[int, str] | None:
    """(seq, data) of the action.submitted record; report one out of place or repeated."""
    first_seq, first_event, sub_text = records[0]
    sub_seq = first_seq
    if first_event != "action.submitted":
        found = [(s, d) for s, e, d in records if e == "action.submitted"]
        if not found:
            problem(
                first_seq, f"no action.submitted record (first record is {first_event}) — it was deleted or altered"
            )
            return None
        problem(first_seq, f"{first_event} is recorded before the action was submitted")
        sub_seq, sub_text = found[0]
    for seq, event, _ in records[1:]:
        if event == "action.submitted" and seq != sub_seq:
            problem(seq, "a second action.submitted record for the same action")
    return sub_seq, sub_text


def _load_objects(sub_text: str, last_text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The data of two records, which must be JSON objects; ValueError says what they are not."""
    try:
        sub = orjson.loads(sub_text)
        last = orjson.loads(last_text)
    except orjson.JSONDecodeError:
        raise ValueError("not valid JSON") from None
    if not isinstance(sub, dict) or not isinstance(last, dict):
        raise ValueError("not a JSON object")
    return sub, last


def _check_submitted_fields(row: Any, sub: dict[str, Any], sub_seq: int, problem: Report) -> None:
    stored = tuple(row[_FIELDS0 : _FIELDS0 + _N])
    recorded = tuple(map(sub.get, _SUB_KEYS))
    if stored == recorded:
        return
    differs = [
        f"{column} is {_short(a)} in the row but {_short(b)} in the record"
        for (_, column), a, b in zip(_SUBMITTED_FIELDS, stored, recorded, strict=True)
        if a != b
    ]
    problem(sub_seq, "action row differs from its action.submitted record: " + "; ".join(differs))


def _recomputed_request_hash(row: Any) -> str:
    """The same digest as canonical.request_hash, from the action row's stored arguments."""
    try:
        document = {
            "agent_id": row[_AGENT],
            "tool": row[_TOOL],
            "operation": row[_OPERATION],
            "params": orjson.loads(row[_PARAMS]),
            "context": orjson.loads(row[_CONTEXT]),
        }
        return hashlib.sha256(fast_canonical(document, may_hold_nan=False)).hexdigest()
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return "(unreadable params or context)"


def _hash_in_force(records: list[Rec], sub_seq: int, sub: dict[str, Any]) -> tuple[int, str, Any]:
    """(seq, event, request_hash) of the record naming the arguments in force.

    Those submitted, or the last ones an approver edited in: every later record that
    names a request_hash names the one it acted on.
    """
    for seq, event, text in reversed(records):
        if seq == sub_seq:
            break
        if '"request_hash":' in text:
            data = _loads_object(text)
            if data is not None and "request_hash" in data:
                return seq, event, data["request_hash"]
            break
    return sub_seq, "action.submitted", sub.get("request_hash")


def _check_request_hash(row: Any, records: list[Rec], sub_seq: int, sub: dict[str, Any], problem: Report) -> None:
    recomputed = _recomputed_request_hash(row)
    hash_seq, hash_event, expected = _hash_in_force(records, sub_seq, sub)
    if row[_HASH] != expected:
        problem(
            hash_seq,
            f"request_hash is {_short(row[_HASH])} in the row but {_short(expected)} in its {hash_event} record",
        )
    if recomputed != expected:
        problem(
            hash_seq,
            "the action's arguments changed: request_hash recomputed from its tool, operation, params, "
            f"context and agent_id is {recomputed[:16]}…, its {hash_event} record says {str(expected)[:16]}…",
        )


def _check_status(row: Any, last_seq: int, last_event: str, last: dict[str, Any], problem: Report) -> None:
    status = row[_STATUS]
    if last.get("status") != status:
        problem(
            last_seq,
            f"status is {status!r} in the row but its last record ({last_event}) says {last.get('status')!r}",
        )
        return
    if last_event not in _RESULT_EVENTS:
        return
    try:
        stored_result = orjson.loads(row[_RESULT]) if row[_RESULT] is not None else None
    except orjson.JSONDecodeError:
        stored_result = ("unreadable",)
    if not _same_json(stored_result, last.get("result")) or row[_ERROR] != last.get("error"):
        problem(last_seq, f"result or error in the row differs from its {last_event} record")


def _check_votes(row: Any, records: list[Rec], last_seq: int, problem: Report) -> None:
    recorded_votes = sum(1 for _, e, _ in records if e in _VOTE_EVENTS)
    if int(row[_VOTES]) != recorded_votes:
        problem(
            last_seq,
            f"{row[_VOTES]} approval vote(s) stored but {recorded_votes} recorded — votes were added or removed",
        )


def _check_permit(row: Any, records: list[Rec], problem: Report) -> None:
    """The permit on the row is the last one its records issued (by SHA-256) and is for
    this action and its arguments in force; each start names a permit that was issued."""
    issued: list[tuple[int, str, str]] = []  # (seq, event, sha256) of each permit issued
    for seq, event, text in records:
        if '"permit' not in text:
            continue
        data = _loads_object(text)
        if data is None:
            continue
        permit = data.get("permit")
        if isinstance(permit, dict):
            issued.append((seq, event, str(permit.get("sha256"))))
        elif event == _STARTED and data.get("permit_sha256") is not None:
            named = data["permit_sha256"]
            if not issued or issued[-1][2] != named:
                problem(seq, f"the start names permit {_short(named)}, which was not the permit last issued to it")
    stored = row[_PERMIT]
    if stored is None:
        if issued:
            problem(issued[-1][0], f"its {issued[-1][1]} record issued a permit but the row carries none")
        return
    if not issued:
        problem(None, "the action carries a permit that no audit record issued — it was set outside the service")
        return
    seq, event, recorded = issued[-1]
    digest = hashlib.sha256(str(stored).encode()).hexdigest()
    if digest != recorded:
        problem(seq, f"the permit in the row (sha256 {digest[:16]}…) is not the one its {event} record issued")
        return
    try:
        claims = read_permit(stored)
    except PermitError as exc:
        problem(seq, f"the permit in the row cannot be read: {exc.message}")
        return
    expected = {"action_id": row[_ID], "tool": row[_TOOL], "operation": row[_OPERATION], "request_hash": row[_HASH]}
    differs = [
        f"{name} {_short(getattr(claims, name))}" for name, value in expected.items() if getattr(claims, name) != value
    ]
    if differs:
        problem(seq, "the permit is for another call than the row: " + ", ".join(differs))


def _loads_object(text: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None  # the chain check names an unreadable record
    return value if isinstance(value, dict) else None


def _same_json(a: Any, b: Any) -> bool:
    """Equal as canonical JSON: 1 and 1.0 are the same number, True and 1 are not."""
    if type(a) is not type(b):
        return _same_number(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same_json, a, b))
    return bool(a == b)


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def report_orphans(conn: Connection, report: VerifyReport) -> None:
    """Name each action that has records but no row (once, at its first record)."""
    seen: set[str] = set()
    for seq, aid in audit_log.orphaned_records(conn, report.max_problems + 1):
        if aid not in seen:
            seen.add(aid)
            report.add(
                Problem(seq, "records exist for this action but its row is gone — it was deleted", aid, kind="state")
            )


# -- keys --------------------------------------------------------------------------


def check_keys(conn: Connection, report: VerifyReport, key_records: list[Rec]) -> None:
    """Compare every key row with its key.created and key.revoked records."""
    created, revoked = _key_events(key_records)
    rows = audit_log.key_rows(conn)
    report.keys = len(rows)
    for row in rows:
        entry = created.pop(row.id, None)
        if entry is None:
            report.add(
                Problem(
                    None,
                    "the key has no key.created record — it was added outside the service",
                    key_id=row.id,
                    kind="state",
                )
            )
            continue
        _check_key(report, row, entry, revoked)
    for key_id, (seq, _) in sorted(created.items(), key=lambda kv: kv[1][0]):
        report.add(
            Problem(
                seq,
                "a key.created record exists but the key's row is gone — it was deleted",
                key_id=key_id,
                kind="state",
            )
        )


def _key_events(key_records: list[Rec]) -> tuple[dict[str, tuple[int, dict[str, Any]]], dict[str, int]]:
    """The first key.created record (seq, data) and the first key.revoked seq of each key."""
    created: dict[str, tuple[int, dict[str, Any]]] = {}
    revoked: dict[str, int] = {}
    for seq, event, text in key_records:
        data = _loads_object(text)  # an unreadable record: the chain check has named it
        key_id = data.get("key_id") if data is not None else None
        if not isinstance(key_id, str) or data is None:
            continue
        if event == "key.created":
            created.setdefault(key_id, (seq, data))
        elif event == "key.revoked":
            revoked.setdefault(key_id, seq)
    return created, revoked


def _check_key(report: VerifyReport, row: KeyRow, entry: tuple[int, dict[str, Any]], revoked: dict[str, int]) -> None:
    seq, data = entry
    differs = _key_differences(row, data)
    if differs:
        report.add(
            Problem(seq, "key differs from its key.created record: " + "; ".join(differs), key_id=row.id, kind="state")
        )
    was_revoked = row.id in revoked
    if was_revoked != (row.revoked_at is not None):
        where = revoked.get(row.id, seq)
        said = "revoked" if was_revoked else "active"
        now = "revoked" if row.revoked_at is not None else "active"
        report.add(Problem(where, f"key is {now} in the row but its records say {said}", key_id=row.id, kind="state"))


def _key_differences(row: KeyRow, data: dict[str, Any]) -> list[str]:
    try:
        groups = sorted(orjson.loads(row.groups or "[]"))
    except orjson.JSONDecodeError:
        groups = ["(unreadable)"]
    stored = {"role": row.role, "agent_id": row.agent_id, "groups": groups, "name": row.name or ""}
    recorded = {
        "role": data.get("role"),
        "agent_id": data.get("agent_id"),
        "groups": sorted(data.get("groups") or []),
        "name": data.get("name") or "",
    }
    if "key_hash" in data:  # records written before the digest was recorded do not carry it
        stored["key_hash"] = row.key_hash
        recorded["key_hash"] = data["key_hash"]
    return [
        f"{k} is {_short(stored[k])} in the row but {_short(recorded[k])} in the record"
        for k in stored
        if stored[k] != recorded[k]
    ]

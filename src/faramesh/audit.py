"""Tamper-evident audit log: an append-only hash chain in the database.

Each record is hashed as SHA-256(prev_hash || canonical(record)), where the record is
{seq, ts, event, action_id, actor, data}. Records are appended inside the same
transaction as the state change they describe, so one never exists without the other.
The chain head lives in a one-row table that every append locks (FOR UPDATE on
PostgreSQL; SQLite has a single writer), so concurrent appends form one line.

This module also verifies the chain (in the database or in an exported JSON Lines
file), checks that actions and keys are in the state their records say, exports
records, and reads checkpoints (the head's seq and hash, kept elsewhere).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from faramesh.canonical import canonical_json
from faramesh.storage.schema import GENESIS_HASH, actions, api_keys, approvals, audit_head, audit_log

# -- canonical encoding ------------------------------------------------------------

# orjson writes floats with the same shortest round-trip digits as the canonical form;
# they differ only where orjson adds ".0" to an integral float or uses an exponent
# ("e+16", "e-7"; hex digits in hashes never precede a sign). A string that happens
# to match only costs the slower, exact path.
_NON_CANONICAL_FLOAT = re.compile(rb"[0-9](?:\.0(?![0-9])|e[-+])")
_ORJSON_STRICT = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


_PLAIN = frozenset({str, int, bool, type(None)})


def _with_canonical_floats(value: Any) -> Any:
    """A copy of a JSON value whose floats are pre-encoded in canonical form."""
    kind = type(value)
    if kind is float:
        return orjson.Fragment(_json_number(value))
    if kind is dict:
        return {k: v if type(v) in _PLAIN else _with_canonical_floats(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) in _PLAIN else _with_canonical_floats(v) for v in value]
    if kind in _PLAIN:
        return value
    raise TypeError(f"{kind.__name__} is not a JSON value")


def fast_canonical(value: Any) -> bytes:
    """`canonical_json(value)` for JSON values, through orjson.

    orjson escapes strings exactly as the canonical form does, sorts keys in the same
    (code point) order and writes floats with the same digits; where its float text
    may differ (an integral float, an exponent) or hide a NaN (written as null), the
    floats are first given canonical fragments. Integers beyond 64 bits and anything
    that is not plain JSON take the reference encoder (which refuses NaN and infinities).
    """
    return _fast_canonical(value, may_hold_nan=True)


def _fast_canonical(value: Any, *, may_hold_nan: bool) -> bytes:
    # A value parsed from JSON text cannot hold a NaN, so its nulls are real nulls.
    try:
        out = orjson.dumps(value, option=_ORJSON_STRICT)
        if (may_hold_nan and b"null" in out) or _NON_CANONICAL_FLOAT.search(out):
            out = orjson.dumps(_with_canonical_floats(value), option=_ORJSON_STRICT)
    except (TypeError, ValueError):
        return canonical_json(value)
    return out


def _json_str(value: str | None) -> str:
    if value is None:
        return "null"
    # Printable ASCII without quote or backslash needs no escaping (ids, event names).
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return '"' + value + '"'
    return json.dumps(value, ensure_ascii=False)


def _json_number(value: float | int) -> str:
    if type(value) is int:
        return str(value)
    if not isinstance(value, float):
        return canonical_json(value).decode("utf-8")  # bool and the like: the reference decides
    if value.is_integer():
        return str(int(value))
    text = repr(value)  # shortest round-trip form: no trailing zeros
    if "e" in text or "n" in text:  # exponent, nan, inf: let the reference decide (or refuse)
        return canonical_json(value).decode("ascii")
    return text


class _Names(dict[str | None, str]):
    """Encoded event names and actors: few distinct values, so encode each once."""

    def __missing__(self, key: str | None) -> str:
        encoded = _json_str(key)
        if len(self) < 10_000:
            self[key] = encoded
        return encoded


_names = _Names()


def _record_text(seq: int, ts: float, event: str, action_id: str | None, actor: str | None, data_json: str) -> str:
    return (
        f'{{"action_id":{_json_str(action_id)},"actor":{_names[actor]},"data":{data_json},'
        f'"event":{_names[event]},"seq":{_json_number(seq)},"ts":{_json_number(ts)}}}'
    )


def record_bytes(*, seq: int, ts: float, event: str, action_id: str | None, actor: str | None, data_json: str) -> bytes:
    """Canonical bytes of a record whose `data` is already canonical JSON text.

    Equal to `canonical_json(record_body(...))` (keys in sorted order: action_id, actor,
    data, event, seq, ts), built by concatenation so that verifying does not re-parse
    and re-encode every stored `data`.
    """
    return _record_text(seq, ts, event, action_id, actor, data_json).encode("utf-8")


def chain_hash(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("utf-8") + body).hexdigest()


def record_hash(prev_hash: str, record: dict[str, Any]) -> str:
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical_json(record))
    return digest.hexdigest()


def record_body(
    *, seq: int, ts: float, event: str, action_id: str | None, actor: str | None, data: Any
) -> dict[str, Any]:
    return {"seq": seq, "ts": ts, "event": event, "action_id": action_id, "actor": actor, "data": data}


def seal(
    prev_hash: str,
    *,
    seq: int,
    ts: float,
    event: str,
    action_id: str | None,
    actor: str | None,
    data: Any,
) -> dict[str, Any]:
    """The stored row of a new record: `data` as canonical text, `hash` linking it to prev_hash."""
    data_json = canonical_json(data).decode("utf-8")
    body = record_bytes(seq=seq, ts=ts, event=event, action_id=action_id, actor=actor, data_json=data_json)
    return {
        "seq": seq,
        "ts": ts,
        "event": event,
        "action_id": action_id,
        "actor": actor,
        "data": data_json,
        "prev_hash": prev_hash,
        "hash": chain_hash(prev_hash, body),
    }


# -- append ------------------------------------------------------------------------


def append(
    conn: Connection,
    *,
    event: str,
    ts: float,
    data: dict[str, Any],
    action_id: str | None = None,
    actor: str | None = None,
) -> int:
    """Append one record to the chain inside the caller's transaction; return its seq."""
    head = conn.execute(_LOCK_HEAD).one()
    row = seal(head.hash, seq=int(head.seq) + 1, ts=ts, event=event, action_id=action_id, actor=actor, data=data)
    conn.execute(_INSERT_RECORD, row)
    conn.execute(_MOVE_HEAD, {"new_seq": row["seq"], "new_hash": row["hash"]})
    return int(row["seq"])


# Built once: every state change runs these, and prebuilt statements skip SQLAlchemy's
# per-call statement construction and cache-key work.
_LOCK_HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
_INSERT_RECORD = audit_log.insert()
_MOVE_HEAD = (
    update(audit_head)
    .where(audit_head.c.id == 1)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


# -- readers -----------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    ts: float
    event: str
    action_id: str | None
    actor: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "event": self.event,
            "action_id": self.action_id,
            "actor": self.actor,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def row_to_record(row: Any) -> AuditRecord:
    return AuditRecord(
        seq=int(row.seq),
        ts=float(row.ts),
        event=row.event,
        action_id=row.action_id,
        actor=row.actor,
        data=orjson.loads(row.data),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def action_events(conn: Connection, action_id: str) -> list[AuditRecord]:
    rows = conn.execute(select(audit_log).where(audit_log.c.action_id == action_id).order_by(audit_log.c.seq)).all()
    return [row_to_record(r) for r in rows]


def events_after(conn: Connection, seq: int, limit: int = 1000) -> list[AuditRecord]:
    rows = conn.execute(select(audit_log).where(audit_log.c.seq > seq).order_by(audit_log.c.seq).limit(limit)).all()
    return [row_to_record(r) for r in rows]


def head(conn: Connection) -> tuple[int, str]:
    row = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one()
    return int(row.seq), str(row.hash)


# -- checkpoints -------------------------------------------------------------------

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Checkpoint:
    """A head of the chain noted down elsewhere: the log must still contain it."""

    seq: int
    hash: str
    ts: float | None = None

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        seq_text, sep, digest = text.strip().partition(":")
        if not sep or not (seq_text.isascii() and seq_text.isdigit()) or not _HEX64.fullmatch(digest.lower()):
            raise ValueError(f"a checkpoint is SEQ:HASH (a number, a colon, 64 hex digits), got {text!r}")
        return cls(int(seq_text), digest.lower())

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "ts": self.ts, "time": iso(self.ts), "checkpoint": str(self)}


def checkpoint(conn: Connection) -> Checkpoint:
    """The current head: its seq, hash and the time of the head record."""
    seq, digest = head(conn)
    ts = conn.execute(select(audit_log.c.ts).where(audit_log.c.seq == seq)).scalar() if seq else None
    return Checkpoint(seq, digest, float(ts) if ts is not None else None)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


# -- export ------------------------------------------------------------------------


def export_line(
    *,
    seq: int,
    ts: float,
    event: str,
    action_id: str | None,
    actor: str | None,
    data_json: str,
    prev_hash: str,
    hash: str,
) -> bytes:
    """One exported record: canonical JSON of the record plus its prev_hash and hash, and a newline."""
    return (
        f'{{"action_id":{_json_str(action_id)},"actor":{_names[actor]},"data":{data_json},'
        f'"event":{_names[event]},"hash":{_json_str(hash)},"prev_hash":{_json_str(prev_hash)},'
        f'"seq":{_json_number(seq)},"ts":{_json_number(ts)}}}\n'
    ).encode()


_COLUMNS = (
    audit_log.c.seq,
    audit_log.c.ts,
    audit_log.c.event,
    audit_log.c.action_id,
    audit_log.c.actor,
    audit_log.c.data,
    audit_log.c.prev_hash,
    audit_log.c.hash,
)
_BATCH = 5000


def _stream(conn: Connection, stmt: Any) -> Iterator[tuple[Any, ...]]:
    """Rows as plain tuples, in batches, straight from the driver.

    Verification reads every row of the log, so it skips SQLAlchemy's result rows and
    type processing (the columns are text, integers and floats, which the drivers
    return as such). PostgreSQL gets a server-side (named) cursor, so memory stays
    flat however long the log is; it runs inside the connection's transaction.
    """
    compiled = stmt.compile(dialect=conn.dialect)
    params = compiled.params
    args: Any = [params[name] for name in compiled.positiontup or ()] if compiled.positional else params
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    if conn.dialect.name == "postgresql":
        if not conn.in_transaction():
            conn.begin()
        cursor = dbapi.cursor(name=f"faramesh_audit_{next(_cursor_ids)}")
    else:
        cursor = dbapi.cursor()
    try:
        cursor.execute(str(compiled), args)
        while batch := cursor.fetchmany(_BATCH):
            yield from batch
    finally:
        cursor.close()


_cursor_ids = itertools.count()


def export(
    conn: Connection,
    *,
    since_seq: int | None = None,
    since_ts: float | None = None,
    action_id: str | None = None,
) -> Iterator[bytes]:
    """Exported lines in seq order: after `since_seq`, at or after `since_ts`, of one action."""
    stmt = select(*_COLUMNS).order_by(audit_log.c.seq)
    if since_seq is not None:
        stmt = stmt.where(audit_log.c.seq > since_seq)
    if since_ts is not None:
        stmt = stmt.where(audit_log.c.ts >= since_ts)
    if action_id is not None:
        stmt = stmt.where(audit_log.c.action_id == action_id)
    for seq, ts, event, aid, actor, data, prev, digest in _stream(conn, stmt):
        yield export_line(
            seq=seq, ts=ts, event=event, action_id=aid, actor=actor, data_json=data, prev_hash=prev, hash=digest
        )


# -- verification ------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing that does not match, named by record (seq) and subject (action or key)."""

    seq: int | None
    message: str
    action_id: str | None = None
    key_id: str | None = None
    kind: str = "chain"  # chain | state | checkpoint | file

    def line(self) -> str:
        prefix = "audit chain broken" if self.kind in ("chain", "checkpoint", "file") else "audit state mismatch"
        where = f" at seq {self.seq}" if self.seq is not None else ""
        if self.action_id is not None:
            where += f" (action {self.action_id})"
        elif self.key_id is not None:
            where += f" (key {self.key_id})"
        return f"{prefix}{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "action_id": self.action_id,
            "key_id": self.key_id,
            "kind": self.kind,
            "message": self.message,
            "line": self.line(),
        }


@dataclass
class VerifyReport:
    records: int = 0
    first_seq: int | None = None
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    anchored: bool = True  # the chain was checked from the genesis hash
    actions: int | None = None  # actions checked against their records (database only)
    keys: int | None = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    omitted: int = 0  # problems found beyond the reporting limit
    max_problems: int = 100

    @property
    def ok(self) -> bool:
        return not self.problems and not self.omitted

    def add(self, problem: Problem) -> None:
        if len(self.problems) < self.max_problems:
            self.problems.append(problem)
        else:
            self.omitted += 1

    def withdraw(self, problem: Problem) -> None:
        """Take back a problem that later records explained otherwise."""
        for i in range(len(self.problems) - 1, -1, -1):
            if self.problems[i] is problem:
                del self.problems[i]
                return
        self.omitted = max(0, self.omitted - 1)

    def summary(self) -> str:
        if self.ok:
            return f"audit log intact: {self.records} records, head seq {self.last_seq} hash {self.last_hash}"
        total = len(self.problems) + self.omitted
        return f"audit log NOT intact: {total} problem(s) in {self.records} records"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "first_seq": self.first_seq,
            "head_seq": self.last_seq,
            "head_hash": self.last_hash,
            "anchored": self.anchored,
            "actions": self.actions,
            "keys": self.keys,
            "checkpoints": [str(c) for c in self.checkpoints],
            "problems": [p.to_dict() for p in self.problems],
            "omitted_problems": self.omitted,
        }


# (seq, ts, event, action_id, actor, data_json, prev_hash, hash)
ChainRow = tuple[int, float, str, str | None, str | None, str, str, str]

_DIAGNOSES = 5  # at most this many "where did this record come from" lookups


def _check_chain(
    rows: Iterable[ChainRow],
    report: VerifyReport,
    *,
    contiguous: bool,
    locate: Callable[[str], int | None] | None = None,
    others: list[tuple[int, str, str]] | None = None,
) -> None:
    """Recompute every hash and every link; record problems in `report`.

    `contiguous`: the rows are the whole log, from seq 1 and the genesis hash, without
    gaps. Otherwise they are a slice: each record is checked against its own prev_hash,
    and links are checked wherever two records are adjacent.
    `locate(hash)`: the seq of the record with that hash, to tell a moved record from
    an altered one. `others` collects (seq, event, data) of the records about no action.
    """
    pending = {c.seq: c for c in report.checkpoints}
    sha256 = hashlib.sha256
    record_text = _record_text
    expected_prev: str | None = GENESIS_HASH if contiguous else None
    last_seq: int | None = None  # the previous record's seq
    high = 0  # the highest seq so far
    gaps: dict[int, Problem] = {}  # single missing records, until they turn up out of order
    explained = False  # the next record's link is already accounted for
    diagnoses = 0
    count = 0
    for row in rows:
        seq, ts, event, action_id, actor, data_json, prev_hash, stored = row
        count += 1
        if action_id is None and others is not None:
            others.append((seq, event, data_json))
        link_explained, explained = explained, False
        if last_seq is None:
            report.first_seq = seq
            if contiguous and seq != 1:
                missing = "seq 1 is" if seq == 2 else f"records 1..{seq - 1} are"
                report.add(Problem(1, f"{missing} missing: the log starts at seq {seq} — records were deleted"))
                link_explained = True
            if seq - 1 in pending:
                cp = pending.pop(seq - 1)
                if prev_hash != cp.hash:
                    report.add(_checkpoint_problem(seq, action_id, cp, "its prev_hash"))
        elif seq <= high:
            late = gaps.pop(seq, None)
            if late is not None:
                report.withdraw(late)  # it was not missing, only out of place
            report.add(
                Problem(seq, f"out of order: seq {seq} follows seq {last_seq} — records were reordered", action_id)
            )
            link_explained = explained = True
        elif seq != high + 1:
            if contiguous:
                missing = f"seq {high + 1}" if seq == high + 2 else f"records {high + 1}..{seq - 1}"
                gap = Problem(high + 1, f"{missing} missing before seq {seq} — records were deleted")
                report.add(gap)
                if seq == high + 2 and len(gaps) < 1000:
                    gaps[high + 1] = gap
                link_explained = True
            else:
                expected_prev = None  # a gap in a slice: nothing to link to
        try:
            computed = sha256(
                (prev_hash + record_text(seq, ts, event, action_id, actor, data_json)).encode()
            ).hexdigest()
        except (ValueError, TypeError) as exc:
            report.add(Problem(seq, f"record cannot be encoded ({exc}) — record was altered", action_id))
            computed = ""
        hash_ok = computed == stored
        link_ok = expected_prev is None or prev_hash == expected_prev
        if not hash_ok and computed:
            moved_from = None
            if locate is not None and diagnoses < _DIAGNOSES:
                diagnoses += 1
                moved_from = _moved_from(locate, row)
            if moved_from is not None and moved_from != seq:
                report.add(
                    Problem(seq, f"record was moved here from seq {moved_from} — records were reordered", action_id)
                )
            else:
                report.add(Problem(seq, "hash mismatch — record was altered", action_id))
        elif not link_ok and not link_explained:
            report.add(
                Problem(
                    seq,
                    f"prev_hash does not match the hash of seq {last_seq} — seq {last_seq} was rewritten "
                    "with a new hash, or a record was inserted",
                    action_id,
                )
            )
        if seq in pending:
            cp = pending.pop(seq)
            if stored != cp.hash:
                report.add(_checkpoint_problem(seq, action_id, cp, "its hash"))
        if not hash_ok:
            explained = True  # its stored hash cannot be trusted to link the next one
        expected_prev = stored
        last_seq = seq
        high = max(high, seq)
    report.records = count
    if last_seq is not None:
        report.last_seq = last_seq
        report.last_hash = expected_prev or ""
    for cp in sorted(pending.values(), key=lambda c: c.seq):
        if cp.seq == 0 and contiguous:
            if cp.hash != GENESIS_HASH:
                report.add(Problem(0, f"checkpoint {cp} does not name the genesis hash", kind="checkpoint"))
        elif last_seq is None or cp.seq > last_seq:
            end = f"the log ends at seq {last_seq}" if last_seq is not None else "the log is empty"
            report.add(
                Problem(
                    cp.seq,
                    f"checkpoint {cp.seq} is not in the log ({end}) — records were deleted since the checkpoint",
                    kind="checkpoint",
                )
            )
        else:
            report.add(
                Problem(
                    cp.seq,
                    f"checkpoint {cp.seq} lies before the first record here (seq {report.first_seq}); "
                    f"export from --since {cp.seq} or earlier to prove it",
                    kind="checkpoint",
                )
            )


def _checkpoint_problem(seq: int, action_id: str | None, cp: Checkpoint, what: str) -> Problem:
    return Problem(
        seq,
        f"{what} differs from checkpoint {cp.seq}:{cp.hash[:16]}… — the log was rewritten after the checkpoint",
        action_id,
        kind="checkpoint",
    )


def _moved_from(locate: Callable[[str], int | None], row: ChainRow) -> int | None:
    """If this record's content hashes correctly under another seq, that seq."""
    _, ts, event, action_id, actor, data_json, prev_hash, stored = row
    before = locate(prev_hash) if prev_hash != GENESIS_HASH else 0
    if before is None:
        return None
    origin = before + 1
    body = record_bytes(seq=origin, ts=ts, event=event, action_id=action_id, actor=actor, data_json=data_json)
    return origin if chain_hash(prev_hash, body) == stored else None


def verify_database(
    conn: Connection,
    *,
    checkpoints: Iterable[Checkpoint] = (),
    max_problems: int = 100,
) -> VerifyReport:
    """Verify the chain, the head, and every action and key against its records.

    Run it on a connection that has not started a transaction: everything is read in
    one snapshot (REPEATABLE READ on PostgreSQL; one read transaction on SQLite), so a
    server writing meanwhile does not make a consistent log look broken.
    """
    if conn.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    report = VerifyReport(checkpoints=list(checkpoints), max_problems=max_problems)
    others: list[tuple[int, str, str]] = []  # records about no action: keys, policy, ...

    def locate(digest: str) -> int | None:
        found = conn.execute(select(audit_log.c.seq).where(audit_log.c.hash == digest).limit(1)).scalar()
        return int(found) if found is not None else None

    head_seq, head_hash = head(conn)
    _check_chain(
        _stream(conn, select(*_COLUMNS).order_by(audit_log.c.seq)),
        report,
        contiguous=True,
        locate=locate,
        others=others,
    )
    _check_head(report, head_seq, head_hash)
    joined = _check_actions(conn, report)
    if joined < report.records - len(others):
        _report_orphans(conn, report)
    _check_keys(conn, report, [r for r in others if r[1].startswith("key.")])
    return report


def _check_head(report: VerifyReport, head_seq: int, head_hash: str) -> None:
    last = report.last_seq
    if last < head_seq:
        missing = f"seq {head_seq}" if head_seq == last + 1 else f"records {last + 1}..{head_seq}"
        report.add(
            Problem(
                last + 1,
                f"{missing} missing: the chain head says the log ends at seq {head_seq} — "
                "the last records were deleted",
            )
        )
    elif last > head_seq:
        report.add(
            Problem(
                head_seq + 1,
                f"records after seq {head_seq} are not in the chain head (the log ends at seq {last}) — "
                "records were added outside the service",
            )
        )
    elif report.last_hash != head_hash:
        report.add(Problem(last, "hash differs from the chain head's — the last record was replaced"))


# Events that record one approver's vote (the approvals table holds one row per vote).
_VOTE_EVENTS = frozenset({"action.approval_recorded", "action.approved", "action.denied"})
_RESULT_EVENTS = frozenset({"action.succeeded", "action.failed"})
# Fields of the submitted record that must equal the action row's.
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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…'"


def _check_actions(conn: Connection, report: VerifyReport) -> int:
    """Compare every action row with its records; return how many records were read.

    Two streams in the order of the actions table (its integer seq, so both sort the
    same on every database): the action rows, and their records.
    """
    votes = (
        select(func.count())
        .select_from(approvals)
        .where(approvals.c.action_id == actions.c.id)
        .correlate(actions)
        .scalar_subquery()
    )
    # Positions matter: _check_action reads these columns by index, for speed.
    rows_stmt = select(
        actions.c.seq,
        actions.c.id,
        actions.c.status,
        actions.c.request_hash,
        *(actions.c[column] for _, column in _SUBMITTED_FIELDS),
        actions.c.params,
        actions.c.context,
        actions.c.result,
        actions.c.error,
        votes,
    ).order_by(actions.c.seq)
    records_stmt = (
        select(actions.c.seq, audit_log.c.seq, audit_log.c.event, audit_log.c.data)
        .select_from(actions.join(audit_log, audit_log.c.action_id == actions.c.id))
        .order_by(actions.c.seq, audit_log.c.seq)
    )
    # Both cursors stream at once in the same transaction, so they read one snapshot.
    read = 0
    count = 0
    grouped = groupby(_stream(conn, records_stmt), key=itemgetter(0))
    current = next(grouped, None)
    for row in _stream(conn, rows_stmt):
        count += 1
        records: list[tuple[int, str, str]] = []
        if current is not None and current[0] == row[0]:
            records = [(r[1], r[2], r[3]) for r in current[1]]
            current = next(grouped, None)
        read += len(records)
        _check_action(report, row, records)
    report.actions = count
    return read


_SUB_KEYS = tuple(key for key, _ in _SUBMITTED_FIELDS)
_N = len(_SUBMITTED_FIELDS)
# Column positions in the _check_actions query.
_ID, _STATUS, _HASH, _FIELDS0 = 1, 2, 3, 4
_PARAMS, _CONTEXT, _RESULT, _ERROR, _VOTES = (_FIELDS0 + _N + i for i in range(5))
_AGENT, _TOOL, _OPERATION = (_FIELDS0 + _SUB_KEYS.index(k) for k in ("agent_id", "tool", "operation"))


def _check_action(report: VerifyReport, row: Any, records: list[tuple[int, str, str]]) -> None:
    aid = row[_ID]

    def problem(seq: int | None, message: str) -> None:
        report.add(Problem(seq, message, aid, kind="state"))

    if not records:
        problem(None, "the action has no audit records — it was added outside the service, or its records deleted")
        return
    first_seq, first_event, sub_text = records[0]
    sub_seq = first_seq
    if first_event != "action.submitted":
        found = [(s, d) for s, e, d in records if e == "action.submitted"]
        if not found:
            problem(
                first_seq, f"no action.submitted record (first record is {first_event}) — it was deleted or altered"
            )
            return
        problem(first_seq, f"{first_event} is recorded before the action was submitted")
        sub_seq, sub_text = found[0]
    for seq, event, _ in records[1:]:
        if event == "action.submitted" and seq != sub_seq:
            problem(seq, "a second action.submitted record for the same action")
    last_seq, last_event, last_text = records[-1]
    try:
        sub = orjson.loads(sub_text)
        last = orjson.loads(last_text)
    except orjson.JSONDecodeError:
        problem(sub_seq, "a record's data is not valid JSON — record was altered")
        return
    if not isinstance(sub, dict) or not isinstance(last, dict):
        problem(sub_seq, "a record's data is not a JSON object — record was altered")
        return

    stored = tuple(row[_FIELDS0 : _FIELDS0 + _N])
    recorded = tuple(map(sub.get, _SUB_KEYS))
    if stored != recorded:
        differs = [
            f"{column} is {_short(a)} in the row but {_short(b)} in the record"
            for (_, column), a, b in zip(_SUBMITTED_FIELDS, stored, recorded, strict=True)
            if a != b
        ]
        problem(sub_seq, "action row differs from its action.submitted record: " + "; ".join(differs))
    try:
        document = {
            "agent_id": row[_AGENT],
            "tool": row[_TOOL],
            "operation": row[_OPERATION],
            "params": orjson.loads(row[_PARAMS]),
            "context": orjson.loads(row[_CONTEXT]),
        }
        # The same digest as canonical.request_hash computes.
        recomputed = hashlib.sha256(_fast_canonical(document, may_hold_nan=False)).hexdigest()
    except (orjson.JSONDecodeError, ValueError, TypeError):
        recomputed = "(unreadable params or context)"
    # The arguments in force: those submitted, or the last ones an approver edited in
    # (every later record that names a request_hash names the one it acted on).
    hash_seq, hash_event, expected = sub_seq, "action.submitted", sub.get("request_hash")
    for seq, event, text in reversed(records):
        if seq == sub_seq:
            break
        if '"request_hash":' in text:
            data = _loads_object(text)
            if data is not None and "request_hash" in data:
                hash_seq, hash_event, expected = seq, event, data["request_hash"]
            break
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
    status = row[_STATUS]
    if last.get("status") != status:
        problem(
            last_seq,
            f"status is {status!r} in the row but its last record ({last_event}) says {last.get('status')!r}",
        )
    elif last_event in _RESULT_EVENTS:
        try:
            stored_result = orjson.loads(row[_RESULT]) if row[_RESULT] is not None else None
        except orjson.JSONDecodeError:
            stored_result = ("unreadable",)
        if not _same_json(stored_result, last.get("result")) or row[_ERROR] != last.get("error"):
            problem(last_seq, f"result or error in the row differs from its {last_event} record")
    recorded_votes = sum(1 for _, e, _ in records if e in _VOTE_EVENTS)
    if int(row[_VOTES]) != recorded_votes:
        problem(
            last_seq,
            f"{row[_VOTES]} approval vote(s) stored but {recorded_votes} recorded — votes were added or removed",
        )


def _loads_object(text: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None  # the chain check names an unreadable record
    return value if isinstance(value, dict) else None


def _same_json(a: Any, b: Any) -> bool:
    """Equal as canonical JSON: 1 and 1.0 are the same number, True and 1 are not."""
    if type(a) is not type(b):
        numbers = (int, float)
        return (
            isinstance(a, numbers)
            and isinstance(b, numbers)
            and not isinstance(a, bool)
            and not isinstance(b, bool)
            and a == b
        )
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same_json, a, b))
    return bool(a == b)


def _report_orphans(conn: Connection, report: VerifyReport) -> None:
    known = select(actions.c.id).where(actions.c.id == audit_log.c.action_id).correlate(audit_log).exists()
    stmt = (
        select(audit_log.c.seq, audit_log.c.action_id)
        .where(audit_log.c.action_id.is_not(None), ~known)
        .order_by(audit_log.c.seq)
        .limit(report.max_problems + 1)
    )
    seen: set[str] = set()
    for seq, aid in conn.execute(stmt):
        if aid not in seen:
            seen.add(aid)
            report.add(
                Problem(seq, "records exist for this action but its row is gone — it was deleted", aid, kind="state")
            )


def _check_keys(conn: Connection, report: VerifyReport, key_records: list[tuple[int, str, str]]) -> None:
    created: dict[str, tuple[int, dict[str, Any]]] = {}
    revoked: dict[str, int] = {}
    for seq, event, text in key_records:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue  # the chain check has already named this record
        key_id = data.get("key_id") if isinstance(data, dict) else None
        if not isinstance(key_id, str):
            continue
        if event == "key.created":
            created.setdefault(key_id, (seq, data))
        elif event == "key.revoked":
            revoked.setdefault(key_id, seq)
    rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
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
        seq, data = entry
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
        differs = [
            f"{k} is {_short(stored[k])} in the row but {_short(recorded[k])} in the record"
            for k in stored
            if stored[k] != recorded[k]
        ]
        if differs:
            report.add(
                Problem(
                    seq, "key differs from its key.created record: " + "; ".join(differs), key_id=row.id, kind="state"
                )
            )
        was_revoked = row.id in revoked
        if was_revoked != (row.revoked_at is not None):
            where = revoked.get(row.id, seq)
            said = "revoked" if was_revoked else "active"
            now = "revoked" if row.revoked_at is not None else "active"
            report.add(
                Problem(where, f"key is {now} in the row but its records say {said}", key_id=row.id, kind="state")
            )
    for key_id, (seq, _) in sorted(created.items(), key=lambda kv: kv[1][0]):
        report.add(
            Problem(
                seq,
                "a key.created record exists but the key's row is gone — it was deleted",
                key_id=key_id,
                kind="state",
            )
        )


# -- exported files ----------------------------------------------------------------

_FIELDS = ("seq", "ts", "event", "action_id", "actor", "data", "prev_hash", "hash")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads_exact(line: bytes) -> Any:
    """Parse JSON like orjson, but keep integers beyond 64 bits exact.

    orjson reads such integers as floats (1e16 or more, which it writes with "e+"); only
    a line that may hold one is read again with the standard parser.
    """
    value = orjson.loads(line)
    if b"e+" in orjson.dumps(value):
        value = json.loads(line, parse_constant=_refuse_constant)
    return value


def parse_export_line(line: bytes) -> ChainRow:
    """One exported record as a chain row; ValueError when it is not a well-formed record."""
    try:
        rec = _loads_exact(line)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    missing = [f for f in _FIELDS if f not in rec]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    seq, ts = rec["seq"], rec["ts"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError("seq must be a positive integer")
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        raise ValueError("ts must be a number")
    for name in ("event", "prev_hash", "hash"):
        if not isinstance(rec[name], str):
            raise ValueError(f"{name} must be a string")
    for name in ("action_id", "actor"):
        if rec[name] is not None and not isinstance(rec[name], str):
            raise ValueError(f"{name} must be a string or null")
    data_json = _fast_canonical(rec["data"], may_hold_nan=False).decode("utf-8")
    return (seq, ts, rec["event"], rec["action_id"], rec["actor"], data_json, rec["prev_hash"], rec["hash"])


def verify_lines(
    lines: Iterable[bytes],
    *,
    partial: bool = False,
    checkpoints: Iterable[Checkpoint] = (),
    max_problems: int = 100,
) -> VerifyReport:
    """Verify an exported file. A full export is checked from the genesis hash, without gaps;
    with `partial` (an export made with --since or --action) every record is checked
    against its own prev_hash and links are checked between adjacent records."""
    report = VerifyReport(checkpoints=list(checkpoints), max_problems=max_problems, anchored=not partial)

    def rows() -> Iterator[ChainRow]:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield parse_export_line(line)
            except ValueError as exc:
                report.add(Problem(None, f"line {number} is not an audit record: {exc}", kind="file"))

    _check_chain(rows(), report, contiguous=not partial)
    return report


__all__ = [
    "GENESIS_HASH",
    "AuditRecord",
    "Checkpoint",
    "Problem",
    "VerifyReport",
    "action_events",
    "append",
    "chain_hash",
    "checkpoint",
    "events_after",
    "export",
    "export_line",
    "fast_canonical",
    "head",
    "parse_export_line",
    "record_body",
    "record_bytes",
    "record_hash",
    "row_to_record",
    "seal",
    "verify_database",
    "verify_lines",
]

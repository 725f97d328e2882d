"""The hash chain: sealing records, appending them, and reading the head and records.

Each record is hashed as SHA-256(prev_hash || canonical(record)). Records are appended
inside the same transaction as the state change they describe, so one never exists
without the other; the storage layer locks the head row, so concurrent appends form
one line.
"""

from __future__ import annotations

import hashlib
from typing import Any

from faramesh.audit.records import AuditRecord, record_bytes, row_to_record
from faramesh.canonical import fast_canonical
from faramesh.model import Identity
from faramesh.storage.audit_log import Connection
from faramesh.storage.repositories import Repositories


def chain_hash(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("utf-8") + body).hexdigest()


def record_hash(prev_hash: str, record: dict[str, Any]) -> str:
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(fast_canonical(record))
    return digest.hexdigest()


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
    data_json = fast_canonical(data).decode("utf-8")
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


def append(
    conn: Connection,
    *,
    event: str,
    ts: float,
    data: dict[str, Any],
    action_id: str | None = None,
    actor: str | Identity | None = None,
) -> int:
    """Append one record to the chain inside the caller's transaction; return its seq.

    `actor` is a label, or the caller's identity: its label is the record's actor and, for
    a person signed in with single sign-on, `data.person` names them (issuer, subject,
    email, name), so the chain itself says which person did it.
    """
    repos = Repositories.sql(conn)
    if isinstance(actor, Identity):
        if actor.person is not None:
            data = {**data, "person": actor.person.to_dict()}
        actor = actor.label
    head_seq, head_hash = repos.audit.lock_head()
    row = seal(head_hash, seq=head_seq + 1, ts=ts, event=event, action_id=action_id, actor=actor, data=data)
    repos.audit.write_record(row)
    return int(row["seq"])


def head(conn: Connection) -> tuple[int, str]:
    """The seq and hash of the last record (0 and the genesis hash for an empty log)."""
    return Repositories.sql(conn).audit.read_head()


def action_events(conn: Connection, action_id: str) -> list[AuditRecord]:
    return [row_to_record(r) for r in Repositories.sql(conn).audit.action_records(action_id)]


def events_after(conn: Connection, seq: int, limit: int = 1000) -> list[AuditRecord]:
    return [row_to_record(r) for r in Repositories.sql(conn).audit.records_after(seq, limit)]


def event_at(conn: Connection, seq: int) -> AuditRecord | None:
    """The record with this seq, or None when there is none."""
    row = Repositories.sql(conn).audit.record_at(seq)
    return row_to_record(row) if row is not None else None

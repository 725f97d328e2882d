"""Tamper-evident audit log: an append-only hash chain in the database.

Each record is hashed as SHA-256(prev_hash || canonical(record)), where the record is
{seq, ts, event, action_id, actor, data}. Records are appended inside the same
transaction as the state change they describe, so one never exists without the other.
The chain head lives in a one-row table that every append locks (FOR UPDATE on
PostgreSQL; SQLite has a single writer), so concurrent appends form one line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from faramesh.canonical import canonical_json
from faramesh.storage.schema import GENESIS_HASH, audit_head, audit_log


def record_hash(prev_hash: str, record: dict[str, Any]) -> str:
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical_json(record))
    return digest.hexdigest()


def record_body(
    *, seq: int, ts: float, event: str, action_id: str | None, actor: str | None, data: Any
) -> dict[str, Any]:
    return {"seq": seq, "ts": ts, "event": event, "action_id": action_id, "actor": actor, "data": data}


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
    head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()).one()
    seq = int(head.seq) + 1
    body = record_body(seq=seq, ts=ts, event=event, action_id=action_id, actor=actor, data=data)
    digest = record_hash(head.hash, body)
    conn.execute(
        audit_log.insert().values(
            seq=seq,
            ts=ts,
            event=event,
            action_id=action_id,
            actor=actor,
            data=canonical_json(data).decode("utf-8"),
            prev_hash=head.hash,
            hash=digest,
        )
    )
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=digest))
    return seq


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


__all__ = [
    "GENESIS_HASH",
    "AuditRecord",
    "action_events",
    "append",
    "events_after",
    "head",
    "record_body",
    "record_hash",
    "row_to_record",
]

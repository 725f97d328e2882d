"""What an audit record is, and its canonical bytes.

A record is {seq, ts, event, action_id, actor, data}; it is stored with `data` as
canonical JSON text, plus its prev_hash and hash. Its canonical bytes are built by
concatenation (the keys are fixed), so that hashing a stored record does not re-parse
and re-encode its `data`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from faramesh.canonical import canonical_number, canonical_str

# A stored record as read for verification and export:
# (seq, ts, event, action_id, actor, data_json, prev_hash, hash)
ChainRow = tuple[int, float, str, str | None, str | None, str, str, str]


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
    """A stored row (anything with the audit_log columns as attributes) as a record."""
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


def record_body(
    *, seq: int, ts: float, event: str, action_id: str | None, actor: str | None, data: Any
) -> dict[str, Any]:
    return {"seq": seq, "ts": ts, "event": event, "action_id": action_id, "actor": actor, "data": data}


class _Names(dict[str | None, str]):
    """Encoded event names and actors: few distinct values, so encode each once."""

    def __missing__(self, key: str | None) -> str:
        encoded = canonical_str(key)
        if len(self) < 10_000:
            self[key] = encoded
        return encoded


names = _Names()


def record_text(seq: int, ts: float, event: str, action_id: str | None, actor: str | None, data_json: str) -> str:
    """`record_bytes` as text (verification hashes it together with the prev_hash)."""
    return (
        f'{{"action_id":{canonical_str(action_id)},"actor":{names[actor]},"data":{data_json},'
        f'"event":{names[event]},"seq":{canonical_number(seq)},"ts":{canonical_number(ts)}}}'
    )


def record_bytes(*, seq: int, ts: float, event: str, action_id: str | None, actor: str | None, data_json: str) -> bytes:
    """Canonical bytes of a record whose `data` is already canonical JSON text.

    Equal to `canonical_json(record_body(...))` (keys in sorted order: action_id, actor,
    data, event, seq, ts).
    """
    return record_text(seq, ts, event, action_id, actor, data_json).encode("utf-8")

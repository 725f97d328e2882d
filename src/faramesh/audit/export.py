"""Exported files: one canonical JSON object per line, the record plus its prev_hash and hash.

`export` writes them from the database; `parse_export_line` reads one back as a chain
row for `verify_lines`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson

from faramesh.audit.records import ChainRow, names
from faramesh.canonical import canonical_number, canonical_str, fast_canonical
from faramesh.storage import audit_log
from faramesh.storage.audit_log import Connection

_FIELDS = ("seq", "ts", "event", "action_id", "actor", "data", "prev_hash", "hash")


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
        f'{{"action_id":{canonical_str(action_id)},"actor":{names[actor]},"data":{data_json},'
        f'"event":{names[event]},"hash":{canonical_str(hash)},"prev_hash":{canonical_str(prev_hash)},'
        f'"seq":{canonical_number(seq)},"ts":{canonical_number(ts)}}}\n'
    ).encode()


def export(
    conn: Connection,
    *,
    since_seq: int | None = None,
    since_ts: float | None = None,
    action_id: str | None = None,
) -> Iterator[bytes]:
    """Exported lines in seq order: after `since_seq`, at or after `since_ts`, of one action."""
    rows = audit_log.stream_records(conn, since_seq=since_seq, since_ts=since_ts, action_id=action_id)
    for seq, ts, event, aid, actor, data, prev, digest in rows:
        yield export_line(
            seq=seq, ts=ts, event=event, action_id=aid, actor=actor, data_json=data, prev_hash=prev, hash=digest
        )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_exact(line: bytes) -> Any:
    """Parse JSON like orjson, but keep integers beyond 64 bits exact.

    orjson reads such integers as floats (1e16 or more, which it writes with "e+"); only
    a line that may hold one is read again with the standard parser.
    """
    value = orjson.loads(line)
    if b"e+" in orjson.dumps(value):
        value = json.loads(line, parse_constant=_refuse_constant)
    return value


def _check_fields(rec: dict[str, Any]) -> None:
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


def parse_export_line(line: bytes) -> ChainRow:
    """One exported record as a chain row; ValueError when it is not a well-formed record."""
    try:
        rec = loads_exact(line)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    _check_fields(rec)
    data_json = fast_canonical(rec["data"], may_hold_nan=False).decode("utf-8")
    return (
        rec["seq"],
        rec["ts"],
        rec["event"],
        rec["action_id"],
        rec["actor"],
        data_json,
        rec["prev_hash"],
        rec["hash"],
    )

"""Checkpoints: a head of the chain (its seq and hash) noted down outside the database.

A later verification given the checkpoint proves the log still contains it, so records
deleted or rewritten since cannot hide behind a consistent new chain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faramesh.audit.chain import head
from faramesh.storage import audit_log
from faramesh.storage.audit_log import Connection

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
    return Checkpoint(seq, digest, audit_log.record_ts(conn, seq) if seq else None)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")

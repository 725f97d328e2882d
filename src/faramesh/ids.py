"""Identifiers for new records.

Action ids are UUIDv7 (RFC 9562): 48 bits of Unix time in milliseconds, then 74 random
bits. They are as unguessable as they need to be (ids are not credentials: every read
checks the caller's key) and they sort by creation time, so a new action's entry lands at
the end of the indexes on `actions.id` and `audit_log.action_id`, next to the one before
it. A random (v4) id lands on a random index page instead: every submit in a group commit
then dirties pages of its own, which the commit writes and fsyncs, and on a large table
those pages must first be read from disk.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0b10 << 62
_RAND_A = 0xFFF << 64  # 12 random bits after the version
_RAND_B = (1 << 62) - 1  # 62 random bits after the variant


def uuid7(now_ns: int | None = None) -> uuid.UUID:
    """A version 7 UUID for the time `now_ns` (nanoseconds since the epoch; default: now)."""
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 of them used
    return uuid.UUID(int=(ms & 0xFFFF_FFFF_FFFF) << 80 | _VERSION_7 | (rand & _RAND_A) | _VARIANT_RFC | (rand & _RAND_B))


def new_action_id() -> str:
    return str(uuid7())

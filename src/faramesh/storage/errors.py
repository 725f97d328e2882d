"""What storage raises that callers above it handle, without importing the driver layer."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

# A write hit a unique constraint (e.g. two submits raced on one Idempotency-Key).
DuplicateRow = IntegrityError

__all__ = ["DuplicateRow"]

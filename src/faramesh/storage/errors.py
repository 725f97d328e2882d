"""How the database layer's failures look to the layers above, without SQLAlchemy's types."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, SQLAlchemyError

__all__ = ["DatabaseError", "DuplicateRow", "connection_lost", "reason"]

# Any failure of the database layer, for callers that report it and stop.
DatabaseError = SQLAlchemyError

# A write hit a unique constraint (e.g. two submits raced on one Idempotency-Key).
DuplicateRow = IntegrityError


def connection_lost(exc: BaseException) -> bool:
    """A database connection that failed or was cut (not a bad statement)."""
    if isinstance(exc, DisconnectionError):
        return True
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or type(exc.orig).__name__ in ("OperationalError", "InterfaceError")
    )


def reason(exc: BaseException) -> str:
    """What the database or its driver said, on one line, for a person: without
    SQLAlchemy's statement, parameters and link to its error pages."""
    said = str(exc.orig) if isinstance(exc, DBAPIError) and exc.orig is not None else str(exc)
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__

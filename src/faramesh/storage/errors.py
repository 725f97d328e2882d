"""How the database layer's failures look to the layers above, without SQLAlchemy's types."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, SQLAlchemyError

__all__ = ["DatabaseError", "DuplicateRow", "connection_lost"]

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

"""How the database layer's failures look to the layers above, without SQLAlchemy's types."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, DisconnectionError

__all__ = ["connection_lost"]


def connection_lost(exc: BaseException) -> bool:
    """A database connection that failed or was cut (not a bad statement)."""
    if isinstance(exc, DisconnectionError):
        return True
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or type(exc.orig).__name__ in ("OperationalError", "InterfaceError")
    )

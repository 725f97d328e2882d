"""Opening a database that must already exist, for the offline commands (audit
verify/export/checkpoint, policy replay): nothing is created or migrated, and every
reason it cannot be used is a `DatabaseUnusable` with a message a person can act on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from faramesh.config import shown_database_url
from faramesh.storage.errors import reason
from faramesh.storage.migrate import current_revision
from faramesh.storage.store import Store, normalize_url

__all__ = ["DatabaseUnusable", "check_exists", "open_existing"]


class DatabaseUnusable(ValueError):
    """The database cannot be read as a Faramesh database; the message says why."""


def check_exists(database_url: str) -> None:
    """Refuse an invalid URL, and a SQLite file that does not exist (never create one)."""
    try:
        url = make_url(normalize_url(database_url))
    except Exception as exc:
        raise DatabaseUnusable(f"invalid database URL {shown_database_url(database_url)!r}: {exc}") from None
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if path in ("", ":memory:") or not Path(path).expanduser().exists():
            shown = str(Path(path).expanduser().absolute()) if path not in ("", ":memory:") else database_url
            raise DatabaseUnusable(f"no database at {shown!r}; set FARAMESH_DATABASE_URL or --database-url")


@contextlib.contextmanager
def open_existing(database_url: str) -> Iterator[Store]:
    """A store on an existing Faramesh database (schema present), closed on exit."""
    check_exists(database_url)
    try:
        store = Store(database_url)
    except ValueError as exc:
        raise DatabaseUnusable(str(exc)) from None
    try:
        try:
            revision = current_revision(store.engine)
        except SQLAlchemyError as exc:
            raise DatabaseUnusable(f"cannot read the database: {reason(exc)}") from None
        if revision is None:
            raise DatabaseUnusable(
                f"{shown_database_url(database_url)} holds no Faramesh schema (start the server or run `faramesh db upgrade` first)"
            )
        yield store
    finally:
        store.close()

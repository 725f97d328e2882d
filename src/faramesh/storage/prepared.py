"""Prebuilt statements run straight on the driver's cursor: the few every submit runs.

SQLAlchemy Core spends about 20 µs on each execution (execution context, events, result
wrapping) around a driver call of about 2 µs. For the statements on the submit path
(the action insert, the audit append and its head, the retry check) that overhead was a
large share of the SQLite writer's time, and the writer is the one thread every durable
write passes through. The statements stay SQLAlchemy constructs, compiled once per
dialect, so the SQL is written once and every dialect difference is still SQLAlchemy's.

Driver errors are raised as SQLAlchemy's wrapped errors (`IntegrityError`, …), as the rest
of the storage layer raises them, and a connection the driver reports as broken is
invalidated so the pool never hands it out again.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import Executable

__all__ = ["Prepared"]


class _Compiled:
    __slots__ = ("fixed", "names", "positional", "sql")

    def __init__(self, sql: str, names: tuple[str, ...], positional: bool, fixed: dict[str, Any]) -> None:
        self.sql = sql
        self.names = names
        self.positional = positional
        self.fixed = fixed  # values written into the statement itself (`where id == 1`)

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        fixed = self.fixed
        if self.positional:
            return tuple(params[n] if n in params else fixed[n] for n in self.names)
        return {n: params[n] if n in params else fixed[n] for n in self.names}


class Prepared:
    """One statement, compiled on first use for each dialect (and, for an insert, each set
    of columns given), then executed on the raw driver cursor.

    Only plain bind parameters: no expanding `IN` lists. An insert may leave out columns
    with a plain default (filled in as SQLAlchemy would), not ones computed per row.
    """

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}
        self._lock = threading.Lock()

    def _compile(self, conn: Connection, keys: tuple[str, ...]) -> _Compiled:
        cache_key = (conn.dialect.name, keys)
        found = self._compiled.get(cache_key)
        if found is not None:
            return found
        compiled = self.statement.compile(dialect=conn.dialect, column_keys=list(keys) or None)  # type: ignore[attr-defined]
        names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.binds)
        fixed = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        # An insert leaving out a column with a Python-side default: SQLAlchemy would fill
        # it in before executing; a plain value is filled in here the same way.
        for column in getattr(compiled, "insert_prefetch", ()):
            default = column.default
            if default is None or not default.is_scalar:
                raise ValueError(f"column {column.key} has a computed default: give it a value")
            fixed[column.key] = default.arg
        made = _Compiled(compiled.string, names, bool(compiled.positional), fixed)
        with self._lock:
            self._compiled[cache_key] = made
        return made

    def execute(self, conn: Connection, params: Mapping[str, Any] | None = None, *, columns: bool = False) -> Any:
        """Run the statement inside `conn`'s transaction; returns the driver's cursor.

        `columns=True` (inserts): compile for exactly the keys of `params`, so columns left
        out keep their database defaults (an autoincrement key, say).
        """
        params = params or {}
        compiled = self._compile(conn, tuple(sorted(params)) if columns else ())
        args = compiled.args(params)
        raw = conn.connection.dbapi_connection
        assert raw is not None, "the connection is closed"
        cursor = raw.cursor()
        try:
            cursor.execute(compiled.sql, args)
        except conn.dialect.loaded_dbapi.Error as exc:
            broken = conn.dialect.is_disconnect(exc, raw, cursor)
            if broken:
                conn.invalidate(exc)
            raise DBAPIError.instance(
                compiled.sql,
                args,
                exc,
                conn.dialect.loaded_dbapi.Error,
                connection_invalidated=broken,
                dialect=conn.dialect,
            ) from exc
        return cursor

    def first(self, conn: Connection, params: Mapping[str, Any] | None = None) -> tuple[Any, ...] | None:
        """The first row of a query, as a plain tuple in the order of its columns."""
        row: tuple[Any, ...] | None = self.execute(conn, params).fetchone()
        return row

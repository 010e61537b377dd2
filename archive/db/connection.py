"""The archive's database connection while rooms move to SQLAlchemy Core (issue 27).

`Connection` runs two kinds of statement on one database connection, in one transaction:

* SQLAlchemy Core statements (`select(...)`, `insert(...)`, DDL), compiled for the
  connection's dialect (SQLite or PostgreSQL) and run natively: converted rooms;
* the old SQLite SQL strings of the rooms not converted yet: on SQLite run as they
  are; on PostgreSQL through archive.db.postgres's translator, which also takes the
  archive-wide writer lock before the first translated statement of a transaction
  (those rooms rely on one writer at a time). Core statements never take it: converted
  rooms lock the rows they change (`with_for_update`, unique constraints).

Transactions are the archive's own: `begin_write()` (or the context manager
`write()`, or the string "BEGIN IMMEDIATE") opens one - BEGIN IMMEDIATE on SQLite, a
plain BEGIN on PostgreSQL - and `commit()` / `rollback()` end it. Outside one, each
statement commits on its own (the driver is in autocommit).

Results of Core statements are read eagerly into `Result`; rows answer by index, by
(case-insensitive) name and as attributes. Every database error is re-raised as
archive.db.errors (IntegrityError / BusyError / DatabaseError), without values.

Anything else (sqlite3's `backup`, `iterdump`, `total_changes`, the PostgreSQL
adapter's `execute_native`) is passed to the underlying connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from archive.db.errors import translate_error
from archive.errors import ArchiveError

__all__ = ["Connection", "Result", "Row"]


class Row(Sequence):
    """One result row: row[0], row["name"] (any case), row.name, keys(), dict(row)."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: tuple) -> None:
        self._names = names
        self._values = values

    def keys(self) -> list[str]:
        return list(self._names)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return self._values[self._names[key.lower()]]
            except KeyError:
                raise IndexError(f"No item with that key: {key}") from None
        return self._values[key]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[self._names[name.lower()]]
        except KeyError:
            raise AttributeError(name) from None

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Row):
            return self._values == other._values and self.keys() == other.keys()
        if isinstance(other, tuple):
            return self._values == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._names, self._values, strict=True))!r})"


class Result:
    """The rows (read at once), rowcount and lastrowid of one Core statement."""

    arraysize = 1

    def __init__(self, rows: list[Row], rowcount: int, lastrowid: Any) -> None:
        self._rows = rows
        self._position = 0
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> Row | None:
        if self._position >= len(self._rows):
            return None
        row = self._rows[self._position]
        self._position += 1
        return row

    def fetchall(self) -> list[Row]:
        rows = self._rows[self._position :]
        self._position = len(self._rows)
        return rows

    def fetchmany(self, size: int | None = None) -> list[Row]:
        size = size or self.arraysize
        rows = self._rows[self._position : self._position + size]
        self._position += len(rows)
        return rows

    first = fetchone

    def scalar(self) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = self.fetchone()
        return None if row is None else row[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self.fetchall()]

    def __iter__(self) -> Iterator[Row]:
        while (row := self.fetchone()) is not None:
            yield row

    def close(self) -> None:
        self._rows = []


def _result(result: Any) -> Result:
    rows: list[Row] = []
    if result.returns_rows:
        index: dict[str, int] = {}
        for position, name in enumerate(result.keys()):
            index.setdefault(str(name).lower(), position)
        rows = [Row(index, tuple(r)) for r in result.fetchall()]
    rowcount = result.rowcount  # kept even with RETURNING (engine: preserve_rowcount)
    lastrowid = None
    if result.is_insert and rowcount != 0:  # 0: ON CONFLICT DO NOTHING inserted nothing
        try:
            key = result.inserted_primary_key
        except SQLAlchemyError:  # executemany or returning(): no single key
            key = None
        lastrowid = key[0] if key else None
    return Result(rows, rowcount, lastrowid)


class Connection:
    """One connection to the archive database (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        # room -> steps applied (archive.db.migrate): on PostgreSQL a store built per
        # call then costs no round trip after the first migrate.
        self.migrated: dict[str, int] | None = {} if self.dialect == "postgresql" else None
        self._sa = self._connect()
        self._legacy: Any = None
        if self.dialect == "postgresql":
            from archive.db.postgres import PostgresConnection

            schema = self._schema()
            self._legacy = PostgresConnection({}, schema, opener=self._raw, lock_on_begin=False)

    # -- opening ----------------------------------------------------------------------
    def _connect(self) -> Any:
        try:
            return self.engine.connect()
        except SQLAlchemyError as exc:
            url = self.engine.url
            if url.get_backend_name() == "sqlite":
                raise ArchiveError(
                    f"Cannot open the archive database {url.database}: "
                    f"{translate_error(exc)}. Check the home's data directory."
                ) from None
            raise ArchiveError(
                f"Cannot connect to the archive database on PostgreSQL at {url.host}:"
                f"{url.port} (database {url.database}, user {url.username}): "
                f"{translate_error(exc)}. Check that PostgreSQL runs and [database] in "
                "archive.toml (host, port, user, password_file)."
            ) from None

    def _schema(self) -> str:
        from archive.db.engine import schema_of

        return schema_of(self.engine)

    def _raw(self) -> Any:
        """The driver connection, reopened if the server dropped it (PostgreSQL)."""
        raw = self._sa.connection.dbapi_connection
        if raw is not None and not getattr(raw, "closed", False):
            from psycopg import pq

            if raw.info.status != pq.ConnStatus.BAD:
                return raw
        try:
            self._sa.invalidate()
            self._sa.close()
        except SQLAlchemyError:
            pass
        self._sa = self._connect()
        return self._sa.connection.dbapi_connection

    @property
    def raw(self) -> Any:
        """The underlying sqlite3.Connection, or the PostgreSQL adapter."""
        if self._legacy is not None:
            return self._legacy
        return self._sa.connection.dbapi_connection

    # -- statements ---------------------------------------------------------------------
    def execute(self, statement: Any, parameters: Any = None) -> Any:
        """A Core statement (parameters: a mapping, or a list of mappings for many
        rows), or an old SQL string (parameters: a sequence)."""
        if isinstance(statement, str):
            return self._execute_string(statement, parameters)
        if self._legacy is not None:
            self._legacy._usable()  # a dropped connection: fail once inside a transaction
        try:
            if parameters is None:
                result = self._sa.execute(statement)
            else:
                result = self._sa.execute(statement, parameters)
            return _result(result)
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise translate_error(exc) from None

    def _execute_string(self, sql: str, parameters: Any) -> Any:
        if self._legacy is not None:
            return self._legacy.execute(sql, parameters)
        raw = self._sa.connection.dbapi_connection
        cursor = raw.cursor()
        cursor.row_factory = sqlite3.Row
        try:
            return cursor.execute(sql, parameters or ())
        except sqlite3.Error as exc:
            raise translate_error(exc) from None

    def executemany(self, statement: Any, rows: Iterable[Any]) -> Any:
        if not isinstance(statement, str):
            return self.execute(statement, [dict(r) for r in rows])
        if self._legacy is not None:
            return self._legacy.executemany(statement, rows)
        try:
            return self._sa.connection.dbapi_connection.executemany(statement, rows)
        except sqlite3.Error as exc:
            raise translate_error(exc) from None

    def executescript(self, script: str) -> Any:
        if self._legacy is not None:
            return self._legacy.executescript(script)
        try:
            return self._sa.connection.dbapi_connection.executescript(script)
        except sqlite3.Error as exc:
            raise translate_error(exc) from None

    def cursor(self) -> Any:
        if self._legacy is not None:
            return self._legacy.cursor()
        cursor = self._sa.connection.dbapi_connection.cursor()
        cursor.row_factory = sqlite3.Row
        return cursor

    # -- transactions -------------------------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        return bool(self.raw.in_transaction)

    def begin_write(self) -> None:
        """Open a write transaction: BEGIN IMMEDIATE on SQLite (the file's one writer),
        a plain BEGIN on PostgreSQL (rows are locked as they are changed or selected
        FOR UPDATE; the writer lock only if old SQL runs in it)."""
        self._execute_string("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN", None)

    def commit(self) -> None:
        if self.in_transaction:
            self._execute_string("COMMIT", None)

    def rollback(self) -> None:
        if self.in_transaction:
            self._execute_string("ROLLBACK", None)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """`with conn.write():` one write transaction, rolled back on any exception."""
        self.begin_write()
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def close(self) -> None:
        try:
            self._sa.close()
        except SQLAlchemyError:
            pass

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self.in_transaction:
            if exc_type:
                self.rollback()
            else:
                self.commit()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.raw, name)

    def __repr__(self) -> str:
        return f"<archive.db.Connection {self.dialect}>"

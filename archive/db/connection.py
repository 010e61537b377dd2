"""The archive's database connection: SQLAlchemy Core statements on SQLite or PostgreSQL.

`Connection` runs SQLAlchemy Core statements (`select(...)`, `insert(...)`, DDL,
`text(...)` for a backend's own fixed SQL), compiled for the connection's dialect
(SQLite or PostgreSQL) and run natively. There is no translation of SQL (issue 27):

* on PostgreSQL a plain SQL *string* is refused with SqlStringError before it reaches
  the server (the rooms' old strings were SQLite SQL); a backend's own script (the
  PostgreSQL half of a migration step) runs unchanged through `execute_native`;
* on SQLite a string still runs as it is, for the tools that read SQLite files
  directly (backup, fsck, the Orthanc index snapshot) and `PRAGMA`s.

Concurrency is per row: rooms lock what they change (`with_for_update`, unique
constraints); there is no archive-wide writer lock. Migrations take turns on their own
advisory lock (archive.db.MIGRATION_KEY); appending to the audit chain serialises on
its head row (archive.audit.pgchain).

Transactions are the archive's own: `begin_write()` (or the context manager `write()`)
opens one - BEGIN IMMEDIATE on SQLite, a plain BEGIN on PostgreSQL - and `commit()` /
`rollback()` end it. Outside one, each statement commits on its own (the driver is in
autocommit). On PostgreSQL a COMMIT of a transaction the server already aborted raises
(after rolling back) instead of silently ending it, and a connection dropped by the
server is reopened - once with BusyError if a transaction was open, which is gone.

Results are read eagerly into `Result`; rows answer by index, by (case-insensitive)
name and as attributes. Every database error is re-raised as archive.db.errors
(IntegrityError / BusyError / DatabaseError), without values.

On SQLite, anything else (sqlite3's `backup`, `iterdump`, `total_changes`) is passed to
the underlying sqlite3 connection; on PostgreSQL `iterdump` is the connection's own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import MetaData, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from archive.db.errors import BusyError, OtherOperationalError, SqlStringError, translate_error
from archive.errors import ArchiveError

__all__ = ["Connection", "Result", "Row", "SqlStringError"]


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
        # PostgreSQL: a transaction was begun and not yet ended (a dropped connection
        # loses it; the next statement must say so rather than run outside it).
        self._began = False

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

    @property
    def raw(self) -> Any:
        """The driver's connection: sqlite3.Connection or psycopg.Connection."""
        return self._sa.connection.dbapi_connection

    def _live(self) -> Any:
        """PostgreSQL: the driver connection, or None when it is gone (SQLAlchemy
        invalidates its connection on a disconnect error; the server may close it)."""
        if self._sa.closed or self._sa.invalidated:
            return None
        raw = self.raw
        if raw is None or raw.closed:
            return None
        from psycopg import pq

        return None if raw.info.status == pq.ConnStatus.BAD else raw

    def _usable(self, *, ending: bool = False) -> Any:
        """PostgreSQL: the live driver connection, reopened if the server dropped it. A
        transaction that was open is gone with the old connection, so any statement but
        the ROLLBACK that ends it fails (BusyError: retry) rather than run outside it."""
        if self._sa.closed:  # closed by the archive: stays closed, as on SQLite
            raise OtherOperationalError("Cannot operate on a closed database.")
        raw = self._live()
        if raw is not None:
            return raw
        lost, self._began = self._began, False
        try:
            self._sa.invalidate()
            self._sa.close()
        except SQLAlchemyError:
            pass
        self._sa = self._connect()
        if lost and not ending:
            raise BusyError(
                "the connection to PostgreSQL was lost inside a transaction, which was "
                "rolled back; retry"
            )
        return self.raw

    # -- statements ---------------------------------------------------------------------
    def execute(self, statement: Any, parameters: Any = None) -> Any:
        """A Core statement (parameters: a mapping, or a list of mappings for many rows);
        on SQLite also a SQL string (parameters: a sequence)."""
        if isinstance(statement, str):
            return self._execute_string(statement, parameters)
        if self.dialect == "postgresql":
            self._usable()
        try:
            if parameters is None:
                result = self._sa.execute(statement)
            else:
                result = self._sa.execute(statement, parameters)
            return _result(result)
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise translate_error(exc) from None

    def _refuse_string(self) -> None:
        if self.dialect != "sqlite":
            raise SqlStringError(
                f"this statement is SQLite SQL and the archive database is on {self.dialect}; "
                "write it as a SQLAlchemy Core statement (select(), insert(), text() for a "
                "backend's own fixed SQL; see archive/db/FORMAT.md). Nothing was executed."
            )

    def _execute_string(self, sql: str, parameters: Any) -> Any:
        self._refuse_string()
        cursor = self.raw.cursor()
        cursor.row_factory = sqlite3.Row
        try:
            return cursor.execute(sql, parameters or ())
        except sqlite3.Error as exc:
            raise translate_error(exc) from None

    def executemany(self, statement: Any, rows: Iterable[Any]) -> Any:
        if not isinstance(statement, str):
            return self.execute(statement, [dict(r) for r in rows])
        self._refuse_string()
        try:
            return self.raw.executemany(statement, rows)
        except sqlite3.Error as exc:
            raise translate_error(exc) from None

    def executescript(self, script: str) -> Any:
        self._refuse_string()
        try:
            return self.raw.executescript(script)
        except sqlite3.Error as exc:
            raise translate_error(exc) from None

    def cursor(self) -> Any:
        self._refuse_string()
        cursor = self.raw.cursor()
        cursor.row_factory = sqlite3.Row
        return cursor

    def execute_native(self, script: str) -> None:
        """Run PostgreSQL's own SQL unchanged (one or more statements, no parameters):
        the PostgreSQL half of a migration step (triggers, functions, text search)."""
        if self.dialect != "postgresql":
            raise ArchiveError(
                f"execute_native runs PostgreSQL's own SQL; this connection is {self.dialect}. "
                "Give the step's SQLite half as a script or a Core step."
            )
        self._usable()
        try:
            # no_parameters: the driver gets the script as written (no %-escaping, the
            # simple query protocol, so several statements run in one call).
            self._sa.exec_driver_sql(script, execution_options={"no_parameters": True})
        except SQLAlchemyError as exc:
            raise translate_error(exc) from None

    def iterdump(self) -> Iterator[str]:
        """Every row of the archive's tables as text, like sqlite3's iterdump (used to
        check what reaches the database, e.g. that no identifier is stored in clear)."""
        if self.dialect == "sqlite":
            yield from self.raw.iterdump()
            return
        metadata = MetaData()
        try:
            metadata.reflect(self._sa)
        except SQLAlchemyError as exc:
            raise translate_error(exc) from None
        for table in sorted(metadata.tables.values(), key=lambda t: t.name):
            for row in self.execute(select(table)):
                values = ", ".join("NULL" if v is None else repr(v) for v in row)
                yield f'INSERT INTO "{table.name}" VALUES({values});'

    # -- transactions -------------------------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        if self.dialect == "sqlite":
            return bool(self.raw.in_transaction)
        raw = self._live()
        if raw is None:
            return False
        from psycopg import pq

        return raw.info.transaction_status in (
            pq.TransactionStatus.ACTIVE,
            pq.TransactionStatus.INTRANS,
            pq.TransactionStatus.INERROR,
        )

    def _driver(self, sql: str, *, ending: bool = False) -> None:
        """BEGIN / COMMIT / ROLLBACK on the driver connection (SQLAlchemy's is in
        autocommit, so the archive says where its transactions start and end)."""
        raw = self._usable(ending=ending) if self.dialect == "postgresql" else self.raw
        try:
            raw.execute(sql)
        except Exception as exc:  # noqa: BLE001 - sqlite3 or psycopg, translated
            raise translate_error(exc) from None

    def begin_write(self) -> None:
        """Open a write transaction: BEGIN IMMEDIATE on SQLite (the file's one writer),
        a plain BEGIN on PostgreSQL (rows are locked as they are changed or selected
        FOR UPDATE; there is no archive-wide writer lock)."""
        if self.dialect == "sqlite":
            self._driver("BEGIN IMMEDIATE")
            return
        if self.in_transaction:
            raise OtherOperationalError("cannot start a transaction within a transaction")
        self._driver("BEGIN")
        self._began = True

    def commit(self) -> None:
        if self.dialect == "sqlite":
            if self.in_transaction:
                self._driver("COMMIT")
            return
        if self._sa.closed and not self._began:
            return  # nothing was begun: nothing to commit (as sqlite3 after close)
        self._usable()  # a transaction lost with its connection raises BusyError
        self._began = False
        if not self.in_transaction:
            return
        from psycopg import pq

        if self.raw.info.transaction_status == pq.TransactionStatus.INERROR:
            self._rollback_quietly()
            raise OtherOperationalError(
                "the transaction was aborted by an earlier error and has been rolled back"
            )
        self._driver("COMMIT")

    def rollback(self) -> None:
        if self.dialect == "sqlite":
            if self.in_transaction:
                self._driver("ROLLBACK")
            return
        if self._sa.closed:
            self._began = False
            return
        self._usable(ending=True)
        self._began = False
        if self.in_transaction:
            self._driver("ROLLBACK", ending=True)

    def _rollback_quietly(self) -> None:
        """Roll back without letting a second error (a dropped connection) escape in
        place of the first: the next statement reconnects."""
        try:
            self.raw.execute("ROLLBACK")
        except Exception:  # noqa: BLE001,S110 - the connection is broken; _usable reopens
            pass

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
        if name.startswith("_") or self.__dict__.get("dialect") != "sqlite":
            raise AttributeError(name)
        return getattr(self.raw, name)

    def __repr__(self) -> str:
        return f"<archive.db.Connection {self.dialect}>"

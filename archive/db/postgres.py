"""The archive's tables on PostgreSQL, behind the part of sqlite3.Connection the rooms use.

TRANSITIONAL (issue 27): every room now speaks SQLAlchemy Core through
archive.db.connection.Connection, which hands only the remaining SQL *strings* to this
translator (the audit anchor, PostgreSQL-only migration scripts through
`execute_native`, ad-hoc SQL in tests). In that use the writer lock below is taken at
the first translated statement of a transaction, never for Core statements. The module
goes when those last strings do (tests/unit/test_no_sql_strings.py lists them).

Why an adapter rather than a second copy of every room's SQL: the rooms already write
one small, portable dialect (`?` parameters, `BEGIN IMMEDIATE`, `INSERT OR IGNORE`,
`INTEGER PRIMARY KEY AUTOINCREMENT`, `lastrowid`). `PostgresConnection` translates that
dialect statement by statement and keeps the semantics the rooms rely on:

* `BEGIN IMMEDIATE` (any BEGIN) -> `BEGIN` + `pg_advisory_xact_lock(ADVISORY_KEY)`: one
  writing transaction at a time across every node, exactly SQLite's one-writer rule, so
  read-check-write code ("one case per study") stays correct under READ COMMITTED.
* autocommit outside explicit transactions (sqlite3's `isolation_level=None`).
* `cursor.lastrowid` from `RETURNING <identity column>`, appended to single INSERTs
  into a table that has one; `rowcount` as sqlite3 reports it for writes.
* rows addressable by index and (case-insensitively) by name, like sqlite3.Row.
* psycopg errors re-raised as sqlite3's classes (IntegrityError, OperationalError,
  DatabaseError) with the constraint or primary message only - never PostgreSQL's
  DETAIL, which quotes the offending values (identifiers must not reach a log).
* a COMMIT of a transaction PostgreSQL already aborted raises instead of silently
  rolling back (SQLite would have committed the statements that did succeed).

DDL is translated too (INTEGER -> BIGINT, BLOB -> BYTEA, AUTOINCREMENT -> identity,
WITHOUT ROWID dropped, and a hidden `rowid` identity column on tables without an integer
key so `ORDER BY rowid` keeps insertion order). What cannot be translated mechanically
(FTS5, triggers) is given by the room as a PostgreSQL-specific migration step
(archive.db.migrate accepts {"sqlite": ..., "postgresql": ...}).

All tables live in their own schema (default `teaching_archive`) of the database that
also holds Orthanc's index, so the two never share a name. The password is passed as a
keyword to libpq, never inside a connection string that could be logged.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import Loader

from archive.db.errors import BusyError, OtherOperationalError, scrub, translate_error
from archive.db.sqlite import split_script
from archive.errors import ArchiveError

DIALECT = "postgresql"
# The key of the archive's one-writer lock (any constant; "TEACHARC" in ASCII).
ADVISORY_KEY = 0x5445_4143_4841_5243
DEFAULT_SCHEMA = "teaching_archive"
LOCK_TIMEOUT = "30s"  # like sqlite's busy timeout: wait this long, then "database is locked"

_TOKEN = re.compile(
    r"""
    (?P<string>'(?:[^']|'')*')
  | (?P<ident>"(?:[^"]|"")*")
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<dollar>\$\$.*?\$\$)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<param>\?)
  | (?P<percent>%)
  | (?P<space>\s+)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
# Column names the rooms use that PostgreSQL reserves (SQLite does not).
_RESERVED = frozenset({"USER"})
_TYPES = {"INTEGER": "BIGINT", "BLOB": "BYTEA", "REAL": "DOUBLE PRECISION"}


class Translation:
    """One SQLite statement as PostgreSQL sees it."""

    __slots__ = ("sql", "kind", "insert_table", "mentions_rowid")

    def __init__(self, sql: str, kind: str, insert_table: str | None, mentions_rowid: bool):
        self.sql = sql
        # "begin", "commit", "rollback", "noop", "ddl", "insert", "write", "other"
        self.kind = kind
        self.insert_table = insert_table
        self.mentions_rowid = mentions_rowid


def _tokens(sql: str) -> list[tuple[str, str]]:
    out = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup or "other"
        if kind == "comment":
            out.append(("space", " "))
        else:
            out.append((kind, match.group()))
    return out


def _words(tokens: list[tuple[str, str]]) -> list[str]:
    return [text.upper() for kind, text in tokens if kind == "word"]


@functools.lru_cache(maxsize=1024)
def translate(sql: str, with_params: bool = True) -> Translation:
    """Translate one statement of the rooms' SQLite dialect (see module docstring).

    `with_params`: psycopg reads `%` as a placeholder only when parameters are passed,
    so literal percent signs are doubled then and left alone otherwise."""
    tokens = _tokens(sql)
    words = _words(tokens)
    head = words[:2]
    if not words:
        return Translation("", "noop", None, False)
    if words[0] == "BEGIN":
        return Translation("BEGIN", "begin", None, False)
    if words[0] in ("COMMIT", "END"):
        return Translation("COMMIT", "commit", None, False)
    if words[0] == "ROLLBACK" and "TO" not in words:
        return Translation("ROLLBACK", "rollback", None, False)
    if words[0] in ("PRAGMA", "VACUUM"):
        return Translation("", "noop", None, False)
    ddl = words[0] in ("CREATE", "ALTER", "DROP")
    table_ddl = ddl and ("TABLE" in words[:3])
    ignore = head == ["INSERT", "OR"] and len(words) > 2 and words[2] == "IGNORE"
    if head == ["INSERT", "OR"] and not ignore:
        raise sqlite3.NotSupportedError(
            f"INSERT OR {words[2]} has no PostgreSQL translation; use ON CONFLICT."
        )
    if ignore:  # drop "OR IGNORE"; ON CONFLICT DO NOTHING is appended below
        drop = {_advance(tokens, -1, 2), _advance(tokens, -1, 3)}
        tokens = [t for j, t in enumerate(tokens) if j not in drop]
    out: list[str] = []
    i = 0
    has_int_key = False
    # SQLite's rowid is a result column only when the select list names it.
    selected = words[words.index("SELECT") + 1 :] if "SELECT" in words else []
    selected = selected[: selected.index("FROM")] if "FROM" in selected else selected
    mentions_rowid = "ROWID" in selected
    while i < len(tokens):
        kind, text = tokens[i]
        upper = text.upper()
        if kind == "param":
            out.append("%s")
        elif kind == "percent":
            out.append("%%" if with_params else "%")
        elif kind in ("string", "ident", "dollar"):
            out.append(text.replace("%", "%%") if with_params else text)
        elif kind == "word":
            if upper in _RESERVED and not _is_function(tokens, i):
                out.append(f'"{text.lower()}"')
            elif upper == "JSON_EACH" and _next_words(tokens, i, 3) == ["(", "?", ")"]:
                out.append("json_array_elements_text(%s::json) AS json_each(value)")
                i = _advance(tokens, i, 3)
            elif upper == "GROUP_CONCAT":
                out.append("string_agg")
                i = _group_concat(tokens, i + 1, out)
                continue
            elif table_ddl and upper in _TYPES:
                if _next_words(tokens, i, 2) == ["PRIMARY", "KEY"]:
                    has_int_key = True
                    out.append("BIGINT GENERATED BY DEFAULT AS IDENTITY")
                else:
                    out.append(_TYPES[upper])
            elif table_ddl and upper == "AUTOINCREMENT":
                pass
            elif ddl and upper == "WITHOUT" and _next_words(tokens, i, 1) == ["ROWID"]:
                i = _advance(tokens, i, 1) + 1
                continue
            elif ddl and upper == "COLLATE" and _next_words(tokens, i, 1) == ["NOCASE"]:
                i = _advance(tokens, i, 1) + 1
                continue
            else:
                out.append(text)
        else:
            out.append(text)
        i += 1
    text = "".join(out).strip().rstrip(";").strip()
    if table_ddl and words[0] == "CREATE" and not has_int_key:
        text = _add_rowid(text)
    if ignore:
        text = _before_returning(text, " ON CONFLICT DO NOTHING")
    insert_table = None
    if words[0] == "INSERT" and "RETURNING" not in words:
        position = words.index("INTO") + 1 if "INTO" in words else None
        insert_table = words[position].lower() if position and position < len(words) else None
    if ddl:
        kind = "ddl"
    elif words[0] == "INSERT":
        kind = "insert"
    elif words[0] in ("UPDATE", "DELETE", "REPLACE"):
        kind = "write"
    else:
        kind = "other"
    return Translation(text, kind, insert_table, mentions_rowid)


def _is_function(tokens: list[tuple[str, str]], i: int) -> bool:
    return _next_words(tokens, i, 1) == ["("]


def _significant(tokens: list[tuple[str, str]], start: int) -> Iterator[tuple[int, str]]:
    for j in range(start, len(tokens)):
        if tokens[j][0] != "space":
            yield j, tokens[j][1]


def _next_words(tokens: list[tuple[str, str]], i: int, count: int) -> list[str]:
    found = []
    for _, text in _significant(tokens, i + 1):
        found.append(text.upper())
        if len(found) == count:
            break
    return found


def _advance(tokens: list[tuple[str, str]], i: int, count: int) -> int:
    """Index of the count-th significant token after i."""
    seen = 0
    for j, _ in _significant(tokens, i + 1):
        seen += 1
        if seen == count:
            return j
    return len(tokens)


def _group_concat(tokens: list[tuple[str, str]], start: int, out: list[str]) -> int:
    """GROUP_CONCAT(x[, sep]) -> string_agg(x, sep), sep ',' by default (as SQLite)."""
    depth = 0
    commas = 0
    for j in range(start, len(tokens)):
        kind, text = tokens[j]
        if kind == "param":
            text = "%s"
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
            if depth == 0:
                out.append(")" if commas else ", ',')")
                return j + 1
        elif text == "," and depth == 1:
            commas += 1
        out.append(text)
    raise sqlite3.ProgrammingError("unbalanced GROUP_CONCAT(")


def _add_rowid(text: str) -> str:
    """Tables without an integer key get SQLite's implicit rowid as a real column."""
    close = text.rfind(")")
    if close < 0:
        return text
    return text[:close] + ",\n    rowid BIGINT GENERATED ALWAYS AS IDENTITY\n" + text[close:]


def _before_returning(text: str, clause: str) -> str:
    match = re.search(r"\bRETURNING\b", text, re.IGNORECASE)
    if match:
        return text[: match.start()].rstrip() + clause + " " + text[match.start() :]
    return text + clause


# -- rows and cursors ---------------------------------------------------------------


class Row(Sequence):
    """A result row like sqlite3.Row: by index, by (case-insensitive) name, keys()."""

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

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Row):
            return self._values == other._values and self.keys() == other.keys()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._names, self._values, strict=True))!r})"


class Cursor:
    """The result of one execute: rows fetched eagerly (as sqlite3 does for small
    results), lastrowid, rowcount."""

    arraysize = 1

    def __init__(
        self,
        rows: list[Row] | None = None,
        rowcount: int = -1,
        lastrowid: int | None = None,
        description: tuple | None = None,
    ) -> None:
        self._rows = rows or []
        self._position = 0
        self.rowcount = rowcount
        self.lastrowid = lastrowid
        self.description = description

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

    def __iter__(self) -> Iterator[Row]:
        while (row := self.fetchone()) is not None:
            yield row

    def close(self) -> None:
        self._rows = []


class _NumericLoader(Loader):
    """sum()/avg() over BIGINT give NUMERIC; SQLite gives int or float. Keep it so."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


# -- errors -------------------------------------------------------------------------


def _scrub(message: str) -> str:
    """Drop quoted values from a PostgreSQL message (they may be identifiers)."""
    return scrub(message)


def _sqlite_error(exc: psycopg.Error) -> sqlite3.Error:
    """The archive's error (archive.db.errors, which also derive from sqlite3's classes)."""
    return translate_error(exc)


_WRITES = ("insert", "write", "ddl")
_IN_TRANSACTION = (
    pq.TransactionStatus.ACTIVE,
    pq.TransactionStatus.INTRANS,
    pq.TransactionStatus.INERROR,
)

# -- the connection -----------------------------------------------------------------


def _rollback_quietly(conn: psycopg.Connection) -> None:
    """Roll back after a failed statement without letting a second error (a dropped
    connection) escape in place of the scrubbed one: psycopg's own message would carry
    PostgreSQL's DETAIL, which quotes values (a study UID in a key conflict)."""
    try:
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except psycopg.Error:
        pass  # the connection is broken: the next use reconnects (see _usable)


class PostgresConnection:
    """The subset of sqlite3.Connection the rooms use, over one psycopg connection."""

    dialect = DIALECT
    isolation_level = None

    def __init__(
        self,
        connect_kwargs: dict[str, Any],
        schema: str = DEFAULT_SCHEMA,
        *,
        opener: Any = None,
        lock_on_begin: bool = True,
    ) -> None:
        """`opener` (archive.db.connection) hands over a psycopg connection that
        SQLAlchemy also uses; `lock_on_begin=False` takes the writer lock at the first
        translated statement of a transaction instead of at BEGIN, so SQLAlchemy Core
        statements of converted rooms never wait for it."""
        self._kwargs = connect_kwargs
        self._opener = opener
        self.lock_on_begin = lock_on_begin
        self._writer_locked = False
        self.schema = schema
        self._identity: dict[str, str | None] = {}
        self.migrated: dict[str, int] = {}  # room -> steps applied (archive.db.migrate)
        self._lock = threading.RLock()
        self._conn = self._open()

    # -- opening --------------------------------------------------------------------
    def _open(self) -> psycopg.Connection:
        if self._opener is not None:
            return self._opener()
        try:
            conn = psycopg.connect(
                **self._kwargs,
                autocommit=True,
                options=f"-c search_path={self.schema} -c lock_timeout={LOCK_TIMEOUT}",
            )
        except psycopg.Error as exc:
            where = f"{self._kwargs.get('host')}:{self._kwargs.get('port')}"
            raise ArchiveError(
                f"Cannot connect to the archive database on PostgreSQL at {where} "
                f"(database {self._kwargs.get('dbname')}, user {self._kwargs.get('user')}): "
                f"{_scrub(str(exc).strip())}. Check that PostgreSQL runs and [database] in "
                "archive.toml (host, port, user, password_file)."
            ) from None
        conn.adapters.register_loader("numeric", _NumericLoader)
        exists = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
        ).fetchone()
        if not exists:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_KEY,))
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        return conn

    def _usable(self, kind: str = "other") -> psycopg.Connection:
        """A live connection: reconnect if the server dropped us. A transaction that
        was open is gone with the old connection, so any statement but its ROLLBACK
        fails rather than run outside it."""
        if self._conn.closed or self._conn.info.status == pq.ConnStatus.BAD:
            lost = self._was_in_transaction
            self._was_in_transaction = False
            self._conn = self._open()
            if lost and kind != "rollback":
                raise BusyError(
                    "the connection to PostgreSQL was lost inside a transaction, which "
                    "was rolled back; retry"
                )
        return self._conn

    _was_in_transaction = False

    # -- sqlite3.Connection API -----------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        if self._conn.closed:
            return False
        return self._conn.info.transaction_status in _IN_TRANSACTION

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Cursor:
        params = _params(parameters or ())
        return self._run(translate(sql, bool(params)), params)

    def execute_native(self, script: str) -> None:
        """Run PostgreSQL's own SQL unchanged (one or more statements, no parameters):
        the backend-specific migration steps."""
        with self._lock:
            conn = self._usable()
            try:
                conn.execute(script)
            except psycopg.Error as exc:
                raise _sqlite_error(exc) from None
            self._identity.clear()

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]]) -> Cursor:
        statement = translate(sql)
        batch = [_params(p) for p in seq_of_parameters]
        if not batch:
            return Cursor(rowcount=0)
        with self._lock:
            conn = self._usable()
            alone = not self.in_transaction
            if not alone:
                self._writer_lock(conn)
            try:
                if alone:  # one transaction, like sqlite3's executemany in autocommit
                    conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({ADVISORY_KEY})")
                with conn.cursor() as cur:
                    cur.executemany(statement.sql, batch)
                    count = cur.rowcount
                if alone:
                    conn.execute("COMMIT")
            except psycopg.Error as exc:
                if alone:
                    _rollback_quietly(conn)
                raise _sqlite_error(exc) from None
        return Cursor(rowcount=count)

    def executescript(self, script: str) -> Cursor:
        for statement in split_script(script):
            self.execute(statement)
        return Cursor()

    def commit(self) -> None:
        if self.in_transaction:
            self.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()

    def iterdump(self) -> Iterator[str]:
        """Every row of the archive's schema as text, like sqlite3's iterdump (used to
        check what reaches the database, e.g. that no identifier is stored in clear)."""
        tables = self.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?"
            " ORDER BY table_name",
            (self.schema,),
        ).fetchall()
        for (table,) in tables:
            for row in self.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - catalogue names
                values = ", ".join("NULL" if v is None else repr(v) for v in row)
                yield f'INSERT INTO "{table}" VALUES({values});'

    def cursor(self) -> _CursorFacade:
        return _CursorFacade(self)

    def __enter__(self) -> PostgresConnection:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self.in_transaction:
            self.execute("ROLLBACK" if exc_type else "COMMIT")

    # -- execution ------------------------------------------------------------------
    def _run(self, statement: Translation, parameters: tuple) -> Cursor:
        with self._lock:
            if statement.kind == "noop":
                return Cursor()
            conn = self._usable(statement.kind)
            if statement.kind == "begin":
                return self._begin(conn)
            if statement.kind == "commit":
                return self._commit(conn)
            if statement.kind == "rollback":
                self._writer_locked = False
                if self.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except psycopg.Error as exc:
                        raise _sqlite_error(exc) from None
                self._was_in_transaction = False
                return Cursor()
            self._writer_lock(conn)
            sql = statement.sql
            returning = None
            if statement.kind == "insert" and statement.insert_table:
                returning = self._identity_column(conn, statement.insert_table)
                if returning:
                    sql = f"{sql} RETURNING {returning}"
            alone = statement.kind in _WRITES and not self.in_transaction
            try:
                if alone:  # a write outside BEGIN still waits for the one writer, as in SQLite
                    conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({ADVISORY_KEY})")
                cur = conn.execute(sql, parameters or None)
                result = self._result(cur, returning, statement.mentions_rowid)
                if alone:
                    conn.execute("COMMIT")
            except psycopg.Error as exc:
                if alone:
                    _rollback_quietly(conn)
                raise _sqlite_error(exc) from None
            if statement.kind == "ddl":
                self._identity.clear()
            return result

    def _begin(self, conn: psycopg.Connection) -> Cursor:
        if self.in_transaction:
            raise OtherOperationalError("cannot start a transaction within a transaction")
        begin = "BEGIN"
        if self.lock_on_begin:
            begin += f"; SELECT pg_advisory_xact_lock({ADVISORY_KEY})"
        try:
            conn.execute(begin)
        except psycopg.Error as exc:
            _rollback_quietly(conn)
            raise _sqlite_error(exc) from None
        self._writer_locked = self.lock_on_begin
        self._was_in_transaction = True
        return Cursor()

    def _writer_lock(self, conn: psycopg.Connection) -> None:
        """Inside a transaction begun without it, the writer lock before the first
        translated statement: the rooms still on SQLite SQL keep one writer at a time."""
        if self._writer_locked or not self.in_transaction:
            return
        if conn.info.transaction_status == pq.TransactionStatus.INERROR:
            return  # the statement fails as it should; COMMIT then says why
        try:
            conn.execute(f"SELECT pg_advisory_xact_lock({ADVISORY_KEY})")
        except psycopg.Error as exc:
            raise _sqlite_error(exc) from None
        self._writer_locked = True

    def _commit(self, conn: psycopg.Connection) -> Cursor:
        status = conn.info.transaction_status
        self._was_in_transaction = False
        self._writer_locked = False
        if status == pq.TransactionStatus.INERROR:
            _rollback_quietly(conn)
            raise OtherOperationalError(
                "the transaction was aborted by an earlier error and has been rolled back"
            )
        if status == pq.TransactionStatus.IDLE:
            raise OtherOperationalError("cannot commit - no transaction is active")
        try:
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            raise _sqlite_error(exc) from None
        return Cursor()

    def _identity_column(self, conn: psycopg.Connection, table: str) -> str | None:
        if table not in self._identity:
            row = conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s"
                " AND table_name = %s AND is_identity = 'YES'",
                (self.schema, table),
            ).fetchone()
            self._identity[table] = row[0] if row else None
        return self._identity[table]

    @staticmethod
    def _result(cur: psycopg.Cursor, returning: str | None, wants_rowid: bool) -> Cursor:
        if cur.description is None:
            return Cursor(rowcount=cur.rowcount)
        names = [d.name for d in cur.description]
        raw = cur.fetchall()
        if returning:
            return Cursor(rowcount=cur.rowcount, lastrowid=raw[-1][0] if raw else None)
        keep = [i for i, n in enumerate(names) if wants_rowid or n != "rowid"]
        index = {}
        for position, i in enumerate(keep):
            index.setdefault(names[i].lower(), position)
        if len(keep) == len(names):
            rows = [Row(index, tuple(r)) for r in raw]
        else:
            rows = [Row(index, tuple(r[i] for i in keep)) for r in raw]
        description = tuple((names[i], None, None, None, None, None, None) for i in keep)
        return Cursor(rows, rowcount=cur.rowcount, description=description)


class _CursorFacade:
    """conn.cursor().execute(...) style, for the few callers that use it."""

    def __init__(self, conn: PostgresConnection) -> None:
        self._conn = conn
        self._last = Cursor()

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> _CursorFacade:
        self._last = self._conn.execute(sql, parameters)
        return self

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> _CursorFacade:
        self._last = self._conn.executemany(sql, seq)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._last, name)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._last)

    def close(self) -> None:
        self._last.close()


def _params(parameters: Sequence[Any]) -> tuple:
    """sqlite3 stores True as 1; PostgreSQL would refuse a boolean for a BIGINT."""
    if isinstance(parameters, dict):
        raise sqlite3.ProgrammingError("named parameters are not supported; use ?")
    return tuple(int(p) if isinstance(p, bool) else p for p in parameters)


def connect(
    *,
    host: str,
    port: int,
    database: str,
    user: str,
    password: str = "",
    ssl: bool = False,
    schema: str = DEFAULT_SCHEMA,
) -> PostgresConnection:
    """Open one connection to the archive's schema (created on first use)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise ArchiveError(f"database.schema {schema!r} must be a lower-case SQL name.")
    kwargs: dict[str, Any] = {
        "host": host,
        "port": port,
        "dbname": database,
        "user": user,
        "sslmode": "require" if ssl else "prefer",
        "connect_timeout": 10,
        "application_name": "teaching-archive",
    }
    if password:
        kwargs["password"] = password
    return PostgresConnection(kwargs, schema=schema)

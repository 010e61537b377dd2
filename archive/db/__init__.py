"""The archive's own database, each room owning its own tables.

By default one SQLite file (HOME/data/archive.db). With `[database] kind = "postgresql"`
the same tables live in a schema of the PostgreSQL database that holds Orthanc's index,
so several Orthanc nodes share one catalogue, one set of users, one governance record.

The rooms speak SQLAlchemy Core (issue 27; see FORMAT.md in this directory):
- `engine_for(config)` (archive.db.engine) is the SQLAlchemy engine of either backend;
- `open_database(config)` and `connect(path)` return an archive.db.connection.Connection,
  which runs Core statements natively on both dialects. Nothing translates SQL: a plain
  SQL string runs on SQLite only and is refused on PostgreSQL (SqlStringError);
- errors are archive.db.errors (IntegrityError / BusyError / DatabaseError).

Rooms call `migrate(conn, room, steps)` with an ordered list of steps; a step runs once
and is recorded in `schema_steps`, so upgrading an old home is automatic. A step is
- a SQL script in SQLite's dialect (SQLite only: refused on PostgreSQL),
- a mapping {"sqlite": ..., "postgresql": ...} of each backend's own SQL, run
  unchanged (on PostgreSQL through Connection.execute_native), or
- a callable step(conn) that issues SQLAlchemy Core DDL on the Connection (e.g.
  `create_tables(metadata, [...])`), compiled for the connection's dialect, or
- a tuple of the above, the parts of one step.
Each step runs in one transaction with its `schema_steps` row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    DDL,
    Column,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateColumn, CreateTable

from archive.db.connection import Connection, Result, Row
from archive.db.engine import MIGRATION_KEY, engine_for, sqlite_engine
from archive.db.errors import (
    BusyError,
    DatabaseError,
    IntegrityError,
    SchemaStepError,
    SqlStringError,
    translate_error,
)
from archive.db.sqlite import split_script
from archive.errors import ArchiveError

if TYPE_CHECKING:
    from archive.config import ArchiveConfig

__all__ = [
    "BusyError",
    "Connection",
    "DatabaseError",
    "IntegrityError",
    "Result",
    "Row",
    "SchemaStepError",
    "SqlStringError",
    "Step",
    "add_columns",
    "connect",
    "create_tables",
    "dialect",
    "dialect_insert",
    "engine_for",
    "migrate",
    "open_database",
    "prepared",
    "require_sqlite",
]

Step = str | Mapping[str, str] | Callable[[Connection], None] | tuple[Any, ...]


def open_database(config: ArchiveConfig) -> Connection:
    """The archive database as configured: SQLite in the home, or PostgreSQL.

    The PostgreSQL password comes from database.password_file (checked 0600, this
    user's) and is handed to the driver as a keyword, never inside a URL."""
    return Connection(engine_for(config))


def connect(path: Path | str) -> Connection:
    """The archive database in one SQLite file (tests and SQLite-only tools)."""
    return Connection(sqlite_engine(path))


def create_tables(metadata: MetaData, tables: Sequence[Table]) -> Callable[[Connection], None]:
    """A migration step creating these tables (with their indexes) as declared, in the
    connection's dialect. Declare a table as it is at that step: a later change of
    the table is a later step."""

    def step(conn: Connection) -> None:
        metadata.create_all(conn._sa, tables=list(tables), checkfirst=False)

    step.__name__ = "create_tables(" + ", ".join(t.name for t in tables) + ")"
    return step


def add_columns(table: Table, names: Sequence[str]) -> Callable[[Connection], None]:
    """A migration step adding these declared columns of `table` where they are missing:
    on a home whose table was created before them (by an older step), ALTER TABLE ...
    ADD COLUMN as declared, in the connection's dialect; where the table was created
    with them (create_tables of the current declaration), nothing."""

    def step(conn: Connection) -> None:
        present = {c["name"] for c in inspect(conn._sa).get_columns(table.name)}
        preparer = conn._sa.dialect.identifier_preparer
        for name in names:
            if name in present:
                continue
            column = CreateColumn(table.c[name]).compile(dialect=conn._sa.dialect)
            conn.execute(DDL(f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {column}"))

    step.__name__ = f"add_columns({table.name}: {', '.join(names)})"
    return step


def dialect_insert(conn: Any, table: Table) -> Any:
    """The dialect's INSERT for `table`, which has on_conflict_do_nothing() and
    on_conflict_do_update() (SQLite and PostgreSQL spell them the same)."""
    kind = conn if isinstance(conn, str) else dialect(conn)
    if kind == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


_prepared: dict[tuple[Callable[..., Any], str], Any] = {}


def prepared(conn: Any, build: Callable[[Callable[[Table], Any]], Any]) -> Any:
    """A statement built once per dialect and reused (hot paths: an ingest writes per
    instance). `build(insert_for)` gets the dialect's insert (see dialect_insert) and
    returns a statement whose values come as parameters at execute time; building and
    hashing a Core statement costs more than running it, so hot paths keep theirs."""
    kind = dialect(conn)
    key = (build, kind)
    statement = _prepared.get(key)
    if statement is None:
        statement = build(lambda table: dialect_insert(kind, table))
        _prepared[key] = statement
    return statement


def dialect(conn: Any) -> str:
    """The SQL dialect of a connection: "sqlite" or "postgresql"."""
    return getattr(conn, "dialect", "sqlite")


def require_sqlite(config: ArchiveConfig, what: str, instead: str = "") -> None:
    """Refuse a tool that reads archive.db directly when the tables are on PostgreSQL.

    `instead` says what to do in its place; the default is the PostgreSQL backup."""
    if config.database.shared:
        advice = instead or (
            "stop every node, back up PostgreSQL with pg_dump (database "
            f"{config.database.database}, schemas public and {config.database.schema}) "
            "and keep it with a copy of the home's data and keys directories"
        )
        raise ArchiveError(
            f"{what} works on the embedded SQLite database only and this archive keeps its "
            f"tables on PostgreSQL: {advice} (see ops/SCALE-OUT.md)."
        )


# The record of applied steps (FORMAT.md), in every archive database.
schema_steps = Table(
    "schema_steps",
    MetaData(),
    Column("room", Text, primary_key=True),
    Column("step", Integer, primary_key=True, autoincrement=False),
)


def migrate(conn: Any, room: str, steps: Sequence[Step]) -> None:
    """Apply this room's schema steps that have not run yet, each in one transaction.

    Concurrent migrations (two nodes starting) take turns - BEGIN IMMEDIATE on SQLite,
    an advisory lock kept for migrations on PostgreSQL - and each step is re-checked
    under it, so a step never runs twice."""
    if not isinstance(conn, Connection):
        return _migrate_sqlite3(conn, room, steps)
    kind = dialect(conn)
    # Stores are built per call in places (a quarantine store per instance): on
    # PostgreSQL, remember on the connection which rooms are up to date, so that costs
    # no round trips after the first time.
    known = getattr(conn, "migrated", None)
    if known is not None and known.get(room) == len(steps):
        return
    if kind == "postgresql":  # inside a caller's transaction: part of it
        with nullcontext() if conn.in_transaction else conn.write():
            _migration_lock(conn)
            _ensure_schema(conn)
            conn.execute(CreateTable(schema_steps, if_not_exists=True))
    else:
        conn.execute(CreateTable(schema_steps, if_not_exists=True))
    done = set(
        conn.execute(select(schema_steps.c.step).where(schema_steps.c.room == room)).scalars()
    )
    for number, step in enumerate(steps, start=1):
        if number in done:
            continue
        with conn.write():
            _migration_lock(conn)
            applied = select(schema_steps.c.step).where(
                schema_steps.c.room == room, schema_steps.c.step == number
            )
            if conn.execute(applied).fetchone():
                continue
            try:
                _apply(conn, kind, step)
            except (SQLAlchemyError, DatabaseError) as exc:  # Core DDL runs on conn._sa
                raise _step_refused(room, number, translate_error(exc)) from None
            conn.execute(insert(schema_steps).values(room=room, step=number))
    if known is not None:
        known[room] = len(steps)


def _step_refused(room: str, number: int, error: DatabaseError) -> Exception:
    """The refusal of a room's step, saying what to do; a busy database stays a
    BusyError (retry). The step's transaction is rolled back: nothing of it is kept."""
    if isinstance(error, BusyError):
        return error
    what = f"the {room} room's schema step {number} was refused by the database ({error})"
    if "already exists" in str(error):
        return SchemaStepError(
            f"{what}: the database holds that room's tables but schema_steps has no record "
            "of the step, so it was restored in part or schema_steps was changed. Nothing "
            "was changed; restore the archive's tables and schema_steps together from one "
            "backup (ops/SCALE-OUT.md for PostgreSQL), then start again."
        )
    return SchemaStepError(
        f"{what}. Nothing of the step was kept and the archive does not start on this "
        "schema; restore the backup made before the upgrade, or run the previous version, "
        "and report the room and step (archive/db/FORMAT.md)."
    )


def _ensure_schema(conn: Connection) -> None:
    """The archive's schema, created again if it is gone. The engine creates it on its
    first connection only (archive.db.engine), so a database dropped and created again
    in the same process (a restore, a test's reset) would otherwise have none: "no
    schema has been selected to create in". Checked first: CREATE SCHEMA IF NOT EXISTS
    needs the CREATE right on the database even when the schema exists."""
    from archive.db.engine import schema_of  # noqa: PLC0415

    schema = schema_of(conn.engine)  # a checked lower-case name (postgres_engine)
    if conn.execute(select(func.to_regnamespace(schema))).scalar() is None:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))


def _migration_lock(conn: Connection) -> None:
    if conn.dialect == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_KEY)))


def _migrate_sqlite3(conn: Any, room: str, steps: Sequence[Step]) -> None:
    """migrate() on a bare sqlite3 connection (tools that open a copy of the file)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_steps ("
        " room TEXT NOT NULL, step INTEGER NOT NULL, PRIMARY KEY (room, step))"
    )
    done = {row[0] for row in conn.execute("SELECT step FROM schema_steps WHERE room = ?", (room,))}
    for number, script in enumerate(steps, start=1):
        if number in done:
            continue
        if callable(script) or isinstance(script, tuple | list):
            raise ArchiveError("this step needs an archive.db connection (archive.db.connect).")
        conn.execute("BEGIN IMMEDIATE")
        try:
            _apply(conn, "sqlite", script)
            conn.execute("INSERT INTO schema_steps (room, step) VALUES (?, ?)", (room, number))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _apply(conn: Any, kind: str, step: Step) -> None:
    if isinstance(step, tuple | list):  # parts of one step, in one transaction
        for part in step:
            _apply(conn, kind, part)
        return
    if callable(step):
        step(conn)
        return
    if isinstance(step, Mapping):
        if kind not in step:
            raise ArchiveError(f"a schema step has no {kind} version; this is a bug.")
        script = step[kind]
        if kind != "sqlite":  # the backend's own SQL, unchanged and whole
            if script.strip():
                conn.execute_native(script)
            return
    else:
        script = step
    for statement in split_script(script):
        conn.execute(statement)

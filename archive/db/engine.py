"""SQLAlchemy engines for the archive database: SQLite in the home, or PostgreSQL.

`engine_for(config)` is the one place that knows how to reach the database:

* SQLite: the file HOME/data/archive.db, opened with WAL, synchronous=FULL, foreign
  keys and a 30 s busy timeout (connect event), in driver autocommit so that the
  archive's own `BEGIN IMMEDIATE` decides where a write transaction starts (the CLI
  and the Orthanc plugin write the same file from different processes).
* PostgreSQL: `postgresql+psycopg` (psycopg 3). The URL names host, port, user and
  database only; the password (from database.password_file, 0600) is handed to the
  driver as a connect argument, so it is never inside a string that could be logged or
  printed with the engine. The archive's tables live in their own schema, reached with
  `search_path` (created on first use); lock_timeout bounds how long a row lock is
  awaited before archive.db.errors.BusyError. Autocommit outside explicit
  transactions, as on SQLite. sum()/avg() over BIGINT come back as int or float (as on
  SQLite), not Decimal.

Engines do not pool (NullPool): the archive keeps its connections itself (one per
Orthanc thread, archive.runtime) and a connection closed is closed, as before.
Engines are cached per target, so a dialect is initialised once per process.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from archive.errors import ArchiveError

if TYPE_CHECKING:
    from archive.config import ArchiveConfig

__all__ = ["engine_for", "postgres_engine", "schema_of", "sqlite_engine"]

DEFAULT_SCHEMA = "teaching_archive"
LOCK_TIMEOUT = "30s"  # like SQLite's busy timeout: wait this long, then BusyError
BUSY_TIMEOUT_MS = 30000
# PostgreSQL: migrations (DDL, and creating the schema) of several nodes starting at
# once take turns on this advisory key; it is the only archive-wide lock (archive.db).
MIGRATION_KEY = 0x5445_4143_4D49_4752  # "TEACMIGR"

_engines: dict[tuple, Engine] = {}
_schemas: dict[Engine, str] = {}
_engines_lock = threading.Lock()


def engine_for(config: ArchiveConfig) -> Engine:
    """The engine of the archive database as archive.toml says ([database])."""
    if not config.database.shared:
        return sqlite_engine(config.home.db_path)
    from archive.config import database_password

    settings = config.database
    return postgres_engine(
        host=settings.host,
        port=settings.port,
        database=settings.database,
        user=settings.user,
        password=database_password(config),
        ssl=settings.ssl,
        schema=settings.schema,
    )


def sqlite_engine(path: Path | str) -> Engine:
    """The engine of one SQLite file (":memory:" gives a private database per connection)."""
    key = ("sqlite", str(path))
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = create_engine(
                URL.create("sqlite+pysqlite", database=str(path)),
                poolclass=NullPool,
                isolation_level="AUTOCOMMIT",
                execution_options={"preserve_rowcount": True},  # rowcount with RETURNING too
                connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
                hide_parameters=True,
            )
            event.listen(engine, "connect", _sqlite_settings)
            _engines[key] = engine
    return engine


def _sqlite_settings(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # the archive says BEGIN IMMEDIATE itself
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    ):
        dbapi_conn.execute(pragma)


def postgres_engine(
    *,
    host: str,
    port: int,
    database: str,
    user: str,
    password: str = "",
    ssl: bool = False,
    schema: str = DEFAULT_SCHEMA,
) -> Engine:
    """The engine of the archive's schema in a PostgreSQL database."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise ArchiveError(f"database.schema {schema!r} must be a lower-case SQL name.")
    key = ("postgresql", host, int(port), database, user, ssl, schema, password)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _new_postgres_engine(host, port, database, user, password, ssl, schema)
            _engines[key] = engine
            _schemas[engine] = schema
    return engine


def schema_of(engine: Engine) -> str:
    """The schema that holds the archive's tables on a PostgreSQL engine."""
    return _schemas.get(engine, DEFAULT_SCHEMA)


def numeric_loader() -> type:
    """psycopg's loader for NUMERIC: sum()/avg() over BIGINT give NUMERIC; SQLite gives
    int or float. Keep it so. (psycopg is imported only when PostgreSQL is used.)"""
    from psycopg.adapt import Loader

    class NumericLoader(Loader):
        def load(self, data: Any) -> int | float:
            text = bytes(data).decode()
            return int(text) if text.lstrip("-").isdigit() else float(text)

    return NumericLoader


def _new_postgres_engine(
    host: str, port: int, database: str, user: str, password: str, ssl: bool, schema: str
) -> Engine:
    connect_args: dict[str, Any] = {
        "sslmode": "require" if ssl else "prefer",
        "connect_timeout": 10,
        "application_name": "teaching-archive",
        "options": f"-c search_path={schema} -c lock_timeout={LOCK_TIMEOUT}",
    }
    if password:
        connect_args["password"] = password  # a driver keyword, never in the URL
    engine = create_engine(
        URL.create(
            "postgresql+psycopg", username=user, host=host, port=int(port), database=database
        ),
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        execution_options={"preserve_rowcount": True},
        connect_args=connect_args,
        hide_parameters=True,
    )
    state = {"schema_ready": False}
    loader = numeric_loader()

    @event.listens_for(engine, "connect")
    def _postgres_settings(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.adapters.register_loader("numeric", loader)
        if state["schema_ready"]:
            return
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        try:
            exists = dbapi_conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            if not exists:
                with dbapi_conn.transaction():
                    dbapi_conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_KEY,))
                    dbapi_conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        finally:
            dbapi_conn.autocommit = autocommit
        state["schema_ready"] = True

    return engine

"""The archive database's errors: one hierarchy, whatever the backend.

    DatabaseError            anything else the database refused
      IntegrityError         a unique, check or foreign-key constraint
      BusyError              a lock held too long, a deadlock, a lost connection: retry

Messages name the constraint or the primary message only, never the statement's
parameters nor PostgreSQL's DETAIL (both may quote identifiers), so a traceback or a log
line carries no value. SQLAlchemy's own exception text (which prints the statement and
its parameters) is never used.

Each class also derives from the matching sqlite3 class, which code that also works on
bare sqlite3 connections (backup, fsck, migrations of a copied file) catches
(`except sqlite3.IntegrityError`), so both spellings work on both backends.

SqlStringError (an ArchiveError, not a DatabaseError) is the refusal of a plain SQL
string on PostgreSQL: nothing translates SQL; write a SQLAlchemy Core statement.
SchemaStepError (an ArchiveError too) is a room's schema step the database refused:
the archive does not start on a schema it could not bring up to date.
"""

from __future__ import annotations

import re
import sqlite3

from archive.errors import ArchiveError

__all__ = [
    "BusyError",
    "DatabaseError",
    "IntegrityError",
    "SchemaStepError",
    "SqlStringError",
    "scrub",
    "translate_error",
]


class DatabaseError(ArchiveError, sqlite3.DatabaseError):
    """The archive database refused a statement (the message says which rule, no values)."""


class IntegrityError(DatabaseError, sqlite3.IntegrityError):
    """A unique, check or foreign-key constraint refused the change."""


class BusyError(DatabaseError, sqlite3.OperationalError):
    """Another writer held the rows too long (or the connection was lost): retry."""


class OtherOperationalError(DatabaseError, sqlite3.OperationalError):
    """No such table or column, a syntax error, a transaction in the wrong state."""


class SqlStringError(ArchiveError):
    """A plain SQL string given for a database that is not SQLite: the archive does not
    translate SQL; the statement must be a SQLAlchemy Core statement. Deliberately not a
    DatabaseError, so no caller that retries or tolerates database errors hides it."""


class SchemaStepError(ArchiveError):
    """A room's schema step refused by the database (archive.db.migrate): nothing of the
    step was kept. Not a DatabaseError, so no caller that retries or tolerates database
    errors carries on over a schema it could not bring up to date."""


def scrub(message: str) -> str:
    """The first line of a backend message with quoted values replaced."""
    first = message.splitlines()[0] if message else ""
    first = re.sub(r'(:\s*)"[^"]*"', r"\1<value>", first)
    return re.sub(r"'[^']*'", "<value>", first)


def translate_error(exc: BaseException) -> DatabaseError:
    """The archive error for a driver (sqlite3, psycopg) or SQLAlchemy exception."""
    if isinstance(exc, DatabaseError):
        return exc
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's exception
    if orig is not None and orig is not exc:
        return translate_error(orig)
    if isinstance(exc, sqlite3.Error):
        return _from_sqlite(exc)
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        psycopg = None
    if psycopg is not None and isinstance(exc, psycopg.Error):
        return _from_psycopg(exc, psycopg)
    return DatabaseError(f"database error ({type(exc).__name__})")


def _from_sqlite(exc: sqlite3.Error) -> DatabaseError:
    message = scrub(str(exc))
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(message)
    if isinstance(exc, sqlite3.OperationalError):
        if "locked" in message or "busy" in message:
            return BusyError(message)
        return OtherOperationalError(message)
    return DatabaseError(message)


def _from_psycopg(exc, psycopg) -> DatabaseError:  # noqa: ANN001 - psycopg imported lazily
    diag = exc.diag
    primary = scrub(diag.message_primary or type(exc).__name__)
    busy = (
        psycopg.errors.LockNotAvailable,
        psycopg.errors.QueryCanceled,
        psycopg.errors.DeadlockDetected,
        psycopg.errors.SerializationFailure,
    )
    if isinstance(exc, busy):
        return BusyError(f"database is locked ({primary})")
    if isinstance(exc, psycopg.errors.AdminShutdown | psycopg.errors.CrashShutdown):
        return BusyError(f"the connection to PostgreSQL was lost ({primary}); retry")
    if isinstance(exc, psycopg.IntegrityError):
        what = diag.constraint_name or diag.sqlstate or ""
        return IntegrityError(f"constraint failed: {what} ({primary})")
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn):
        return OtherOperationalError(f"no such table or column ({primary})")
    if isinstance(exc, psycopg.OperationalError) and exc.pgconn is not None:
        if exc.pgconn.status != psycopg.pq.ConnStatus.OK:
            return BusyError(f"the connection to PostgreSQL was lost ({primary}); retry")
    if isinstance(exc, psycopg.OperationalError | psycopg.ProgrammingError):
        return OtherOperationalError(primary)
    if isinstance(exc, psycopg.errors.InFailedSqlTransaction):
        return OtherOperationalError(primary)
    return DatabaseError(primary)

"""pg_dump / pg_restore of an archive on PostgreSQL: Orthanc's index (schema public) and
the archive's own schema (its tables, the audit chain, the attachments when [storage]
kind = "postgresql"), in PostgreSQL's custom format, inside the encrypted bundle
(archive/backup/FORMAT.md). The password reaches the tools only through a 0600 libpq
password file in a private directory, removed afterwards: never argv, never an
environment value.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from archive.config import ArchiveConfig, database_password
from archive.errors import ArchiveError

DUMP_NAME = "postgres.dump"
DUMP_MAGIC = b"PGDMP"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ArchiveError(
            f"{name} is not installed; run `make setup` (it installs Debian's postgresql "
            "client tools)."
        )
    return path


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:")


def _run(config: ArchiveConfig, command: list[str], private: Path, what: str) -> None:
    db = config.database
    pgpass = private / "pgpass"
    fd = os.open(pgpass, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"*:*:*:{_esc(db.user)}:{_esc(database_password(config))}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    env["PGPASSFILE"] = str(pgpass)
    env["PGSSLMODE"] = "require" if db.ssl else "prefer"
    env["PGCONNECT_TIMEOUT"] = "10"
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    finally:
        pgpass.unlink(missing_ok=True)
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        # The tools' messages name objects, not values; keep the last lines only.
        raise ArchiveError(
            f"{what} failed ({'; '.join(lines[-2:]) or 'exit ' + str(result.returncode)}); "
            "check that PostgreSQL runs and [database] in archive.toml, then retry."
        )


def _target(config: ArchiveConfig, database: str | None = None) -> list[str]:
    db = config.database
    return ["-h", db.host, "-p", str(db.port), "-U", db.user, "-d", database or db.database]


def dump(config: ArchiveConfig, out: Path) -> None:
    """Both schemas of a STOPPED archive (every node stopped) into `out` (custom format)."""
    private = Path(tempfile.mkdtemp(prefix=".pgdump-", dir=config.home.tmp_dir))
    try:
        _run(
            config,
            [
                _tool("pg_dump"),
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                "--schema=public",
                "--extension=*",  # Orthanc's index uses pg_trgm
                f"--schema={config.database.schema}",
                "-f",
                str(out),
                *_target(config),
            ],  # fmt: skip
            private,
            "pg_dump of the archive's database",
        )
    finally:
        shutil.rmtree(private, ignore_errors=True)
    with open(out, "rb") as fh:
        if fh.read(len(DUMP_MAGIC)) != DUMP_MAGIC:
            raise ArchiveError("pg_dump wrote something that is not a custom-format dump.")


def is_empty(config: ArchiveConfig) -> bool:
    """True when the configured database holds neither Orthanc's tables nor the archive's
    schema (a restore goes only into such a database)."""
    import psycopg  # noqa: PLC0415

    db = config.database
    try:
        with psycopg.connect(
            host=db.host, port=db.port, dbname=db.database, user=db.user,
            password=database_password(config), connect_timeout=10,
            sslmode="require" if db.ssl else "prefer",
        ) as conn:  # fmt: skip
            row = conn.execute(
                "SELECT to_regclass('public.resources') IS NULL AND NOT EXISTS "
                "(SELECT 1 FROM pg_namespace WHERE nspname = %s)",
                (db.schema,),
            ).fetchone()
    except psycopg.Error as exc:
        raise ArchiveError(
            f"cannot connect to PostgreSQL database {db.database} at {db.host}:{db.port} "
            f"({type(exc).__name__}); create it (createdb -O {db.user} {db.database}) and "
            "check [database] in archive.toml."
        ) from None
    return bool(row and row[0])


def restore(config: ArchiveConfig, data: bytes) -> None:
    """Load a dump into the configured database, which must be empty (is_empty)."""
    if not data.startswith(DUMP_MAGIC):
        raise ArchiveError("the backup's PostgreSQL dump is not a custom-format dump.")
    private = Path(tempfile.mkdtemp(prefix=".pgrestore-", dir=config.home.tmp_dir))
    try:
        dump_file = private / DUMP_NAME
        fd = os.open(dump_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # Every database already has the schema public: restore all but its creation.
        listed = subprocess.run(
            [_tool("pg_restore"), "--list", str(dump_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        if listed.returncode != 0:
            raise ArchiveError("the backup's PostgreSQL dump cannot be listed by pg_restore.")
        keep = [
            line
            for line in listed.stdout.splitlines()
            if not re.search(
                r"\b(SCHEMA - public|COMMENT - SCHEMA public|COMMENT - EXTENSION)\b", line
            )
        ]
        (private / "list").write_text("\n".join(keep) + "\n", encoding="utf-8")
        _run(
            config,
            [
                _tool("pg_restore"),
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                "--use-list",
                str(private / "list"),
                *_target(config),
                str(dump_file),
            ],  # fmt: skip
            private,
            "pg_restore into the new database",
        )
    finally:
        shutil.rmtree(private, ignore_errors=True)

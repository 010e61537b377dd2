"""A real, throwaway PostgreSQL for scale-out tests and benchmarks.

initdb in a fresh temporary directory, the server on a free loopback port with its unix
socket in that directory, a login role with a password (scram-sha-256 over TCP, so the
archive's password-file path is exercised), always stopped and removed at the end.
PostgreSQL refuses to run as root, so as root every server command runs as the
`postgres` system user (runuser), which then owns the temporary directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from tests.harness import free_port

PG_BIN = Path(os.environ.get("ARCHIVE_PG_BIN", "/usr/lib/postgresql/15/bin"))


def available() -> bool:
    """Whether the PostgreSQL server binaries (ops/setup.sh installs them) are here."""
    return (PG_BIN / "initdb").is_file() and (PG_BIN / "pg_ctl").is_file()


@dataclass
class PostgresServer:
    """One temporary cluster; use as a context manager (stop() is idempotent)."""

    fsync: bool = True
    port: int = field(default_factory=free_port)
    database: str = "orthanc"
    user: str = "orthanc"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18) + ":x")
    root: Path | None = None
    running: bool = False

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    def _as_owner(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*prefix, *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd="/",
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{Path(command[0]).name} failed ({result.returncode}): "
                f"{result.stderr.strip()[-600:]}\n{self.log_tail()}"
            )
        return result

    def log_tail(self, lines: int = 15) -> str:
        if self.root is None or not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def start(self) -> PostgresServer:
        self.root = Path(tempfile.mkdtemp(prefix="archive-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o700)
        try:
            self._as_owner(
                str(PG_BIN / "initdb"),
                "-D", str(self.data_dir),
                "-U", "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-instructions",
            )  # fmt: skip
            options = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                f"-c max_connections=50 -c fsync={'on' if self.fsync else 'off'}"
            )
            self._as_owner(
                str(PG_BIN / "pg_ctl"),
                "-D", str(self.data_dir),
                "-l", str(self.log_file),
                "-o", options,
                "-w", "-t", "60",
                "start",
            )  # fmt: skip
            self.running = True
            quoted = self.password.replace("'", "''")
            self.psql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{quoted}'", quiet=True)
            self.psql(f"CREATE DATABASE {self.database} OWNER {self.user}")
        except BaseException:
            self.stop()
            raise
        return self

    def psql(self, sql: str, *, database: str = "postgres", quiet: bool = False) -> str:
        """Run SQL as the superuser over the unix socket; returns unaligned rows.
        `quiet` keeps the statement (e.g. one holding the password) out of errors."""
        result = self._as_owner(
            "psql",
            "-h", str(self.root),
            "-p", str(self.port),
            "-U", "postgres",
            "-d", database,
            "-v", "ON_ERROR_STOP=1",
            "-At",
            "-c", sql,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            what = "a statement" if quiet else sql
            raise RuntimeError(f"psql failed on {what}: {result.stderr.strip()[-400:]}")
        return result.stdout.strip()

    def query(self, sql: str) -> list[list[str]]:
        """Rows of a query on the archive's database (Orthanc's index)."""
        text = self.psql(sql, database=self.database)
        return [line.split("|") for line in text.splitlines() if line]

    def reset(self) -> None:
        """An empty index again (Orthanc recreates its schema on start)."""
        self.psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        self.psql(f"CREATE DATABASE {self.database} OWNER {self.user}")

    def stop(self) -> None:
        if self.root is None:
            return
        if self.running or (self.data_dir / "postmaster.pid").exists():
            result = self._as_owner(
                str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
                "-t", "30", "stop", check=False,
            )  # fmt: skip
            if result.returncode != 0:
                self._kill_postmaster()
        self.running = False
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def _kill_postmaster(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            return
        time.sleep(0.5)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_password_file(self, path: Path) -> Path:
        """The role's password in a 0600 file, as an operator would provision it."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.password + "\n")
        return path


def use_postgresql(
    config_file: Path,
    server: PostgresServer,
    password_file: Path,
    nodes: list[dict] | None = None,
) -> None:
    """Point an archive home's archive.toml at `server` (and list extra nodes)."""
    raw = tomllib.loads(config_file.read_text(encoding="utf-8"))
    raw["database"] = {
        "kind": "postgresql",
        "dsn": f"postgresql://{server.user}@127.0.0.1:{server.port}/{server.database}",
        "password_file": str(password_file),
        "index_connections": 2,
    }
    if nodes:
        raw["nodes"] = nodes
    config_file.write_text(tomli_w.dumps(raw), encoding="utf-8")

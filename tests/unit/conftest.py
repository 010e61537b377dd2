"""Unit-test fixtures: one real, throwaway PostgreSQL for the whole unit run.

Rooms' store tests are re-run on PostgreSQL (tests/unit/test_pg_*.py) by pointing the
`connect` their module imported at `PgConnections.connect`: every SQLite path (or
":memory:") becomes its own PostgreSQL schema, so each test starts empty and two
connections to one path share one schema, as two connections to one file do.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests import postgres


@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.PostgresServer]:
    """One PostgreSQL cluster for every unit test that needs one (started lazily)."""
    if not postgres.available():
        pytest.skip(f"PostgreSQL server binaries not installed in {postgres.PG_BIN}")
    with postgres.PostgresServer(fsync=False) as server:
        yield server


def pg_home_config(server: postgres.PostgresServer, folder: Path, prefix: str, extra: str = ""):
    """A home whose archive is on its own new PostgreSQL role and database of `server`
    (password in a 0600 file), `extra` appended to its archive.toml: its loaded config."""
    from archive.config import load_config  # noqa: PLC0415
    from archive.paths import HomePaths  # noqa: PLC0415

    name = f"{prefix}_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    server.psql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'", quiet=True)
    server.psql(f"CREATE DATABASE {name} OWNER {name}")
    secret = folder / "pg.password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    home = HomePaths(folder / "home")
    home.root.mkdir()
    home.config_file.write_text(
        "[database]\n"
        f'kind = "postgresql"\nhost = "127.0.0.1"\nport = {server.port}\n'
        f'database = "{name}"\nuser = "{name}"\npassword_file = "{secret}"\n' + extra
    )
    return load_config(home.root)


class PgConnections:
    """archive.db connections to `server`, one schema per SQLite path."""

    _counter = itertools.count()

    def __init__(self, server: postgres.PostgresServer) -> None:
        self.server = server
        self.prefix = f"t{secrets.token_hex(3)}"
        self.schemas: dict[str, str] = {}
        self.opened: list = []

    def schema_for(self, path: Path | str) -> str:
        key = str(path)
        if key == ":memory:" or key not in self.schemas:
            schema = f"{self.prefix}_{next(self._counter)}"
            if key == ":memory:":
                return schema
            self.schemas[key] = schema
        return self.schemas[key]

    def connect(self, path: Path | str = ":memory:"):
        from archive.db import Connection
        from archive.db.engine import postgres_engine

        engine = postgres_engine(
            host="127.0.0.1",
            port=self.server.port,
            database=self.server.database,
            user=self.server.user,
            password=self.server.password,
            schema=self.schema_for(path),
        )
        conn = Connection(engine)
        self.opened.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.opened:
            conn.close()


@pytest.fixture
def pg(pg_server: postgres.PostgresServer) -> Iterator[PgConnections]:
    """Fresh schemas on the shared server; every connection closed after the test."""
    connections = PgConnections(pg_server)
    yield connections
    connections.close()


def run_on_postgres(monkeypatch: pytest.MonkeyPatch, pg: PgConnections, *modules: ModuleType):
    """Make `connect` in each test module open PostgreSQL instead of SQLite."""
    for module in modules:
        monkeypatch.setattr(module, "connect", pg.connect)

"""After the archive's database is dropped and created again in the same process (a
restore rehearsal, a test's reset), opening it again re-creates the archive's schema and
tables: the engine, cached per URL, created the schema on its first connection only, so
migrate checks for it (issue 27)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from archive import db
from archive.access import AccessStore
from archive.errors import ArchiveError
from tests.unit.conftest import pg_home_config


@pytest.fixture
def config(pg_server, tmp_path: Path):
    return pg_home_config(pg_server, tmp_path, "recreated")


def _users(config) -> list[str]:
    conn = db.open_database(config)
    try:
        store = AccessStore(conn)
        return [u.name for u in store.list_users()]
    finally:
        conn.close()


def test_schema_and_tables_come_back_after_drop_and_create_database(pg_server, config):
    conn = db.open_database(config)
    AccessStore(conn).add_user("alice", "pw-alice-long-enough-42", ["personnel"],
                               datetime.now(UTC), by="test")  # fmt: skip
    conn.close()
    assert _users(config) == ["alice"]
    name = config.database.database
    pg_server.psql(f"DROP DATABASE {name} WITH (FORCE)")
    pg_server.psql(f"CREATE DATABASE {name} OWNER {config.database.user}")
    assert _users(config) == []  # an empty archive again, not "relation does not exist"


def test_a_connection_kept_open_fails_closed_when_its_tables_are_dropped(pg_server, config):
    """A connection that migrated before the drop does not quietly start an empty archive
    under a running process: it raises; a connection opened afterwards starts afresh."""
    conn = db.open_database(config)
    try:
        AccessStore(conn).add_user("bob", "pw-bob-long-enough-4242", ["personnel"],
                                   datetime.now(UTC), by="test")  # fmt: skip
        other = db.open_database(config)
        with other.write():
            other.execute(text("DROP OWNED BY CURRENT_USER CASCADE"))
        other.close()
        with pytest.raises(ArchiveError, match="does not exist"):
            AccessStore(conn).list_users()
    finally:
        conn.close()
    assert _users(config) == []

"""archive.db's foundation (issue 27): engines, the connection, errors, steps."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, func, insert, select, text, update

from archive import db
from archive.config import ArchiveConfig, DatabaseConfig
from archive.db.engine import engine_for, sqlite_engine
from archive.paths import HomePaths

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("n", Integer, nullable=False, server_default="0"),
)
STEPS = [db.create_tables(metadata, [items])]
UID = "1.2.826.0.1.3680043.77.1"


@pytest.fixture(params=["sqlite", "postgresql"])
def conn(request, tmp_path):
    if request.param == "sqlite":
        c = db.connect(tmp_path / "archive.db")
    else:
        c = request.getfixturevalue("pg").connect("main")
    db.migrate(c, "demo", STEPS)
    yield c
    c.close()


def test_sqlite_engine_settings(tmp_path):
    conn = db.connect(tmp_path / "archive.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert sqlite_engine(tmp_path / "archive.db") is conn.engine  # one engine per file


def test_statements_of_one_transaction_commit_or_roll_back_together(conn):
    first = conn.execute(insert(items).values(name="a"))
    assert first.lastrowid == 1 and first.rowcount == 1
    conn.begin_write()
    conn.execute(insert(items).values(name="b"))
    conn.execute(text("INSERT INTO items (name) VALUES (:name)"), {"name": "c"})
    conn.rollback()
    with conn.write():
        conn.execute(update(items).where(items.c.name == "a").values(n=items.c.n + 1))
        conn.execute(text("UPDATE items SET n = n + 1 WHERE name = :name"), {"name": "a"})
    row = conn.execute(select(items.c.name, items.c.n)).fetchone()
    assert (row[0], row["N"], row.n, tuple(row)) == ("a", 2, 2, ("a", 2))
    assert conn.execute(select(items.c.name)).scalars() == ["a"]


def test_errors_are_the_archives_and_carry_no_values(conn):
    conn.execute(insert(items).values(name=UID))
    with pytest.raises(db.IntegrityError) as caught:
        conn.execute(insert(items).values(name=UID))
    assert "3680043" not in str(caught.value) and "INSERT" not in str(caught.value)
    with pytest.raises(sqlite3.IntegrityError) as caught:  # bare-sqlite3 code catches it
        conn.execute(text("INSERT INTO items (name) VALUES (:name)"), {"name": UID})
    assert "3680043" not in str(caught.value)
    with pytest.raises(db.DatabaseError):
        conn.execute(text("SELECT * FROM no_such_table"))


def test_a_failed_write_in_a_transaction_rolls_back_whole(conn):
    with pytest.raises(db.IntegrityError), conn.write():
        conn.execute(insert(items).values(name="x"))
        conn.execute(insert(items).values(name="x"))
    assert not conn.in_transaction
    assert conn.execute(select(items.c.id)).fetchall() == []


def test_create_tables_step_compiles_per_dialect_and_runs_once(conn):
    db.migrate(conn, "demo", STEPS)  # again: nothing to do
    steps = conn.execute(
        select(db.schema_steps.c.step).where(db.schema_steps.c.room == "demo")
    ).fetchall()
    assert [r[0] for r in steps] == [1]


def test_postgres_engine_keeps_the_password_out_of_the_url(pg_server):
    from archive.db.engine import postgres_engine

    engine = postgres_engine(
        host="127.0.0.1",
        port=pg_server.port,
        database=pg_server.database,
        user=pg_server.user,
        password=pg_server.password,
        schema="t_engine_url",
    )
    assert engine.url.password is None
    assert pg_server.password not in str(engine.url) and pg_server.password not in repr(engine)
    conn = db.Connection(engine)
    try:
        assert conn.execute(select(func.current_schema())).fetchone()[0] == "t_engine_url"
    finally:
        conn.close()


def test_core_writes_on_different_rows_do_not_wait_for_each_other(pg):
    """PostgreSQL: two write transactions on different rows both proceed (there is no
    archive-wide writer lock)."""
    first, second = pg.connect("rows"), pg.connect("rows")
    db.migrate(first, "demo", STEPS)
    first.execute(insert(items), [{"name": "a"}, {"name": "b"}])
    first.begin_write()
    first.execute(select(items).where(items.c.name == "a").with_for_update())
    done = threading.Event()

    def other_row():
        with second.write():
            second.execute(select(items).where(items.c.name == "b").with_for_update())
            second.execute(update(items).where(items.c.name == "b").values(n=1))
        done.set()

    thread = threading.Thread(target=other_row)
    thread.start()
    assert done.wait(60), "a write on another row waited for the first transaction"
    first.commit()
    thread.join()


def test_engine_for_config(tmp_path, pg_server):
    home = HomePaths(tmp_path / "home")
    assert engine_for(ArchiveConfig(home=home)).url.database == str(home.db_path)
    secret = tmp_path / "pg.password"
    secret.write_text(pg_server.password + "\n")
    secret.chmod(0o600)
    settings = DatabaseConfig(
        kind="postgresql",
        port=pg_server.port,
        database=pg_server.database,
        user=pg_server.user,
        password_file=str(secret),
        schema="t_engine_config",
    )
    engine = engine_for(ArchiveConfig(home=home, database=settings))
    assert engine.dialect.name == "postgresql" and engine.url.password is None
    assert "postgresql+psycopg" in str(engine.url) and pg_server.password not in str(engine.url)

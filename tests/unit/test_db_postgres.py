"""archive.db on a real PostgreSQL without a translator (issue 27).

What holds now: Core statements run natively (rows, lastrowid, rowcount, upserts,
numeric sums); a plain SQL string is refused before it reaches the server, with one
error naming the fix; PostgreSQL's own migration SQL runs unchanged; transactions are
the archive's (an aborted one is never silently committed, a dropped connection fails
once); errors are the archive's, without values; there is no archive-wide writer lock.
All on the shared throwaway cluster from conftest.py.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    insert,
    select,
    text,
    update,
)

from archive import db
from archive.config import ArchiveConfig, DatabaseConfig
from archive.errors import ArchiveError
from archive.paths import HomePaths

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("user", Text),
    Column("flag", Boolean, nullable=False, server_default="false"),
    Column("n", Integer, nullable=False, server_default="0"),
)
STEPS = [db.create_tables(metadata, [items])]
FIX = "write it as a SQLAlchemy Core statement"


@pytest.fixture
def conn(pg):
    c = pg.connect("main")
    db.migrate(c, "demo", STEPS)
    return c


def _count(conn) -> int:
    return conn.execute(select(func.count()).select_from(items)).scalar()


def _each_in_a_thread(work, conns) -> list[BaseException]:
    """Run work(conn) for every connection at once; what each raised."""
    errors: list[BaseException] = []

    def run(c):
        try:
            work(c)
        except BaseException as exc:  # noqa: BLE001 - returned and asserted by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


# -- Core statements on PostgreSQL -------------------------------------------------------


def test_lastrowid_rowcount_and_rows(conn):
    first = conn.execute(insert(items).values(name="a", user="alice"))
    second = conn.execute(insert(items).values(name="b", user="bob"))
    assert (first.lastrowid, second.lastrowid) == (1, 2) and first.rowcount == 1
    row = conn.execute(
        select(items.c.id, items.c.name.label("Label"), items.c.user).where(items.c.id == 2)
    ).fetchone()
    assert row[0] == 2 and row["label"] == "b" and row["LABEL"] == "b" and row.user == "bob"
    assert row.keys() == ["id", "label", "user"] and tuple(row) == (2, "b", "bob")
    assert conn.execute(update(items).values(n=items.c.n + 1)).rowcount == 2
    total = conn.execute(select(func.sum(items.c.n))).scalar()
    assert total == 2 and type(total) is int  # NUMERIC read as int, as SQLite gives it
    assert conn.execute(select(func.avg(items.c.n))).scalar() == 1.0


def test_on_conflict_do_nothing_counts_and_has_no_rowid(conn):
    statement = db.dialect_insert(conn, items).values(name="a").on_conflict_do_nothing()
    first = conn.execute(statement)
    again = conn.execute(statement)
    assert (first.rowcount, first.lastrowid) == (1, 1)
    assert (again.rowcount, again.lastrowid) == (0, None)
    assert _count(conn) == 1


def test_iterdump_lists_the_rows_of_the_schema(conn):
    conn.execute(insert(items).values(name="1.2.826.0.1.3680043.5", flag=True))
    dump = "\n".join(conn.iterdump())
    assert "1.2.826.0.1.3680043.5" in dump and '"items"' in dump and '"schema_steps"' in dump


# -- strings refused -----------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.execute("INSERT INTO items (name) VALUES (?)", ("s",)),
        lambda c: c.execute("INSERT INTO items (name) VALUES ('s')"),
        lambda c: c.executemany("INSERT INTO items (name) VALUES (?)", [("s",), ("t",)]),
        lambda c: c.executescript("INSERT INTO items (name) VALUES ('s');"),
        lambda c: c.cursor(),
    ],
    ids=["execute", "execute-no-params", "executemany", "executescript", "cursor"],
)
def test_sql_strings_are_refused_with_the_fix_and_nothing_runs(conn, call):
    with pytest.raises(db.SqlStringError, match=FIX) as caught:
        call(conn)
    assert isinstance(caught.value, ArchiveError)
    assert not isinstance(caught.value, db.DatabaseError)  # no retry loop may swallow it
    assert _count(conn) == 0


def test_a_refused_string_leaves_the_transaction_usable(conn):
    with conn.write():
        conn.execute(insert(items).values(name="kept"))
        with pytest.raises(db.SqlStringError):
            conn.execute("UPDATE items SET n = 1")
        conn.execute(update(items).values(n=2))  # not aborted: nothing reached the server
    assert conn.execute(select(items.c.name, items.c.n)).fetchall() == [("kept", 2)]


def test_the_same_string_still_runs_on_sqlite(tmp_path):
    conn = db.connect(tmp_path / "a.db")
    db.migrate(conn, "demo", STEPS)
    conn.execute("INSERT INTO items (name) VALUES (?)", ("s",))
    assert [r["name"] for r in conn.execute("SELECT name FROM items")] == ["s"]


def test_a_sqlite_script_step_is_refused_on_postgresql_and_not_recorded(pg):
    conn = pg.connect("script")
    with pytest.raises(db.SqlStringError, match=FIX):
        db.migrate(conn, "demo", ["CREATE TABLE demo_a (id INTEGER PRIMARY KEY);"])
    recorded = conn.execute(select(db.schema_steps.c.step)).fetchall()
    assert recorded == [] and not conn.in_transaction


# -- PostgreSQL's own SQL, unchanged ------------------------------------------------------

NATIVE = """
CREATE FUNCTION demo_label(v text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RETURN v || ' 10%';
END $$;
CREATE INDEX demo_lower_name ON items (lower(name));
"""
STEPS_WITH_NATIVE = [
    *STEPS,
    {"sqlite": "CREATE INDEX demo_lower_name ON items (name);", "postgresql": NATIVE},
]


def test_native_step_runs_unchanged_and_once_even_concurrently(pg):
    conns = [pg.connect("shared") for _ in range(3)]
    assert _each_in_a_thread(lambda c: db.migrate(c, "demo", STEPS_WITH_NATIVE), conns) == []
    db.migrate(conns[0], "demo", STEPS_WITH_NATIVE)  # idempotent
    steps = conns[0].execute(select(db.schema_steps.c.step).order_by(db.schema_steps.c.step))
    assert steps.scalars() == [1, 2]
    # the percent sign is the script's own: not doubled, not taken for a placeholder
    assert conns[0].execute(select(func.demo_label("x"))).scalar() == "x 10%"
    index = conns[0].execute(
        text("SELECT indexdef FROM pg_indexes WHERE indexname = 'demo_lower_name'")
    )
    assert "lower(name)" in index.scalar()


def test_sqlite_half_of_a_native_step_on_sqlite(tmp_path):
    conn = db.connect(tmp_path / "a.db")
    db.migrate(conn, "demo", STEPS_WITH_NATIVE)
    db.migrate(conn, "demo", STEPS_WITH_NATIVE)
    assert conn.execute(select(func.count()).select_from(db.schema_steps)).scalar() == 2
    with pytest.raises(ArchiveError, match="PostgreSQL's own SQL"):
        conn.execute_native("SELECT 1")


# -- transactions ---------------------------------------------------------------------


def test_rollback_and_an_aborted_commit_refused(conn):
    conn.begin_write()
    assert conn.in_transaction
    conn.execute(insert(items).values(name="gone"))
    conn.rollback()
    assert not conn.in_transaction and _count(conn) == 0
    conn.begin_write()
    conn.execute(insert(items).values(name="kept?"))
    with pytest.raises(db.IntegrityError):
        conn.execute(insert(items).values(name="kept?"))
    with pytest.raises(sqlite3.OperationalError, match="rolled back"):
        conn.commit()  # PostgreSQL aborted it: say so rather than pretend
    assert not conn.in_transaction and _count(conn) == 0
    conn.begin_write()
    with pytest.raises(db.DatabaseError, match="within a transaction"):
        conn.begin_write()
    conn.rollback()


def test_a_dropped_connection_fails_once_then_reconnects(pg, conn):
    conn.execute(insert(items).values(name="kept"))
    pid = conn.execute(select(func.pg_backend_pid())).scalar()
    pg.server.psql(f"SELECT pg_terminate_backend({int(pid)})")
    with pytest.raises(db.BusyError):
        _count(conn)  # may have been lost: never replayed
    assert _count(conn) == 1  # reconnected, same schema
    conn.begin_write()
    pid = conn.execute(select(func.pg_backend_pid())).scalar()
    pg.server.psql(f"SELECT pg_terminate_backend({int(pid)})")
    with pytest.raises(db.BusyError):
        conn.execute(insert(items).values(name="lost"))
    with pytest.raises(db.BusyError, match="inside a transaction"):
        # the next statement must not run on a fresh connection outside the transaction
        conn.execute(insert(items).values(name="outside"))
    conn.rollback()  # the room's error path works on the new connection
    assert conn.execute(select(items.c.name)).scalars() == ["kept"]
    with conn.write():
        conn.execute(insert(items).values(name="after"))
    assert _count(conn) == 2


# -- concurrency per row, no writer lock -------------------------------------------------


def test_no_archive_wide_lock_is_held_by_a_write(pg, conn):
    watcher = pg.connect("main")
    advisory = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
    with conn.write():
        conn.execute(insert(items).values(name="a"))
        conn.execute(select(items).where(items.c.name == "a").with_for_update())
        assert watcher.execute(advisory).scalar() == 0
        row_locks = text(
            "SELECT count(*) FROM pg_locks WHERE pid = :pid AND mode = 'RowExclusiveLock'"
        )
        pid = conn.execute(select(func.pg_backend_pid())).scalar()
        assert watcher.execute(row_locks, {"pid": pid}).scalar() >= 1


def test_read_for_update_then_write_loses_no_update(pg, conn):
    conn.execute(insert(items).values(name="counter", n=0))
    workers = [pg.connect("main") for _ in range(3)]
    counter = select(items.c.n).where(items.c.name == "counter")

    def bump(c):
        for _ in range(20):
            with c.write():
                value = c.execute(counter.with_for_update()).scalar()
                c.execute(update(items).where(items.c.name == "counter").values(n=value + 1))

    assert _each_in_a_thread(bump, workers) == []
    assert conn.execute(counter).scalar() == 60


# -- errors ----------------------------------------------------------------------------


def test_errors_are_mapped_and_carry_no_values(pg, conn):
    uid = "1.2.826.0.1.3680043.99"
    conn.execute(insert(items).values(name=uid))
    with pytest.raises(db.IntegrityError) as caught:
        conn.execute(insert(items).values(name=uid))
    assert "3680043" not in str(caught.value) and "items_name_key" in str(caught.value)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        conn.execute(text("SELECT * FROM no_such_table"))
    other = pg.connect("main")
    with conn.write():
        conn.execute(select(items).where(items.c.name == uid).with_for_update())
        other.begin_write()
        other.execute(text("SET LOCAL lock_timeout = '100ms'"))
        started = time.monotonic()
        with pytest.raises(db.BusyError, match="locked"):
            other.execute(select(items).where(items.c.name == uid).with_for_update())
        assert time.monotonic() - started < 20
        other.rollback()


# -- open_database and the access change watch ---------------------------------------


def _config(tmp_path: Path, pg_server, schema: str, password: str | None = None) -> ArchiveConfig:
    secret = tmp_path / "pg.password"
    secret.write_text((password or pg_server.password) + "\n")
    secret.chmod(0o600)
    home = HomePaths(tmp_path / "home")
    return ArchiveConfig(
        home=home,
        database=DatabaseConfig(
            kind="postgresql",
            port=pg_server.port,
            database=pg_server.database,
            user=pg_server.user,
            password_file=str(secret),
            schema=schema,
        ),
    )


def test_open_database_uses_postgresql_and_never_the_home_file(tmp_path, pg_server, pg):
    config = _config(tmp_path, pg_server, pg.schema_for("open"))
    conn = db.open_database(config)
    pg.opened.append(conn)
    assert db.dialect(conn) == "postgresql"
    db.migrate(conn, "demo", STEPS)
    assert not config.home.db_path.exists()
    assert conn.execute(select(func.current_schema())).scalar() == config.database.schema


def test_wrong_password_is_one_clear_error_without_the_password(tmp_path, pg_server, pg):
    config = _config(tmp_path, pg_server, pg.schema_for("bad"), password="not-the-password-xyz")
    with pytest.raises(ArchiveError) as caught:
        db.open_database(config)
    message = str(caught.value)
    assert "not-the-password-xyz" not in message and "[database]" in message


def test_access_change_watch_sees_other_connections_writes(tmp_path, pg_server, pg):
    from archive.access import AccessStore
    from archive.access import tables as access_tables
    from archive.access.watch import ChangeWatch

    config = _config(tmp_path, pg_server, pg.schema_for("watch"))
    store = AccessStore(pg.connect("watch"))
    watch = ChangeWatch(config, interval=0.05)
    try:
        before = watch.generation
        time.sleep(0.2)
        assert watch.generation == before  # nothing written: nothing seen
        other = AccessStore(pg.connect("watch"))
        other.conn.execute(
            insert(access_tables.dicom_nodes).values(
                name="ws1", aet="WS1", host="10.0.0.1", port=104
            )
        )
        deadline = time.monotonic() + 10
        while watch.generation == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watch.generation > before
        assert [n.name for n in store.list_dicom_nodes()] == ["ws1"]
    finally:
        watch.stop()


@pytest.mark.parametrize("schema", ["public", "Bad-Name", "x" * 64, 3])
def test_config_refuses_a_bad_schema(tmp_path, schema):
    from archive.config import parse_config
    from archive.errors import ConfigError

    raw = {"database": {"kind": "postgresql", "schema": schema}}
    with pytest.raises(ConfigError, match="database.schema"):
        parse_config(raw, HomePaths(tmp_path))


def test_config_schema_default_and_choice(tmp_path):
    from archive.config import parse_config

    assert parse_config({}, HomePaths(tmp_path)).database.schema == "teaching_archive"
    raw = {"database": {"kind": "postgresql", "schema": "school_b"}}
    assert parse_config(raw, HomePaths(tmp_path)).database.schema == "school_b"

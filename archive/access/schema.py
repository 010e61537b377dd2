"""The access room's tables (prefix access_), applied with archive.db.migrate, and the
one connection, write lock and transaction that the room's stores share (AccessDb)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from archive.access import tables
from archive.db import Step, add_columns, create_tables, migrate

ROOM = "access"

# Step 1 creates the tables as tables.py declares them now; on a home made before
# issue 27 it ran as a SQL script and steps 3 and 4 then added their columns, which
# `add_columns` does only where they are missing.
STEPS: list[Step] = [
    create_tables(tables.metadata, tables.STEP_1_TABLES),
    # Step 2: PostgreSQL only. Several nodes cache verified credentials and principals;
    # on SQLite they notice writes by `PRAGMA data_version`, which PostgreSQL has no
    # equivalent of, so every write to an access_ table bumps one counter that each
    # node's ChangeWatch polls (archive/access/watch.py).
    {
        "sqlite": "",
        "postgresql": """
        CREATE TABLE access_change_counter (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version BIGINT NOT NULL
        );
        INSERT INTO access_change_counter (id, version) VALUES (1, 0);
        CREATE FUNCTION access_bump_change_counter() RETURNS trigger
            LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
        BEGIN
            UPDATE access_change_counter SET version = version + 1 WHERE id = 1;
            RETURN NULL;
        END $$;
        CREATE TRIGGER access_users_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
            ON access_users FOR EACH STATEMENT EXECUTE FUNCTION access_bump_change_counter();
        CREATE TRIGGER access_roles_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
            ON access_roles FOR EACH STATEMENT EXECUTE FUNCTION access_bump_change_counter();
        CREATE TRIGGER access_training_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
            ON access_training FOR EACH STATEMENT EXECUTE FUNCTION access_bump_change_counter();
        CREATE TRIGGER access_applications_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
            ON access_applications FOR EACH STATEMENT EXECUTE FUNCTION access_bump_change_counter();
        CREATE TRIGGER access_tokens_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
            ON access_tokens FOR EACH STATEMENT EXECUTE FUNCTION access_bump_change_counter();
        CREATE TRIGGER access_dicom_nodes_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
            ON access_dicom_nodes FOR EACH STATEMENT EXECUTE FUNCTION access_bump_change_counter();
        """,
    },
    # Step 3 (issue #20): the account's session epoch. Every change that must end the
    # user's web sessions (password reset, disable or enable, role change, expiry,
    # training revoked) bumps it; a session carries the epoch it was made under and dies
    # when they differ, so re-enabling an account never revives an old session.
    add_columns(tables.users, ["session_epoch"]),
    # Step 4 (issue 21): one workstation registry. A suite workstation is a DICOM node
    # that may query, with its place in the suite; the place used to be kept apart in
    # retired governance workstation table (copied over once by archive.access.nodes).
    add_columns(tables.dicom_nodes, ["location", "added_by", "added_at"]),
]


def migrate_access(conn: Any) -> None:
    migrate(conn, ROOM, STEPS)


class AccessDb:
    """The access tables on one connection: migrated once, written under one lock.

    Every store of the room (accounts, credentials, DICOM nodes) writes through `tx()`;
    after each write transaction the `after_write` callbacks run (the credential store
    forgets the principals it remembered, so a write takes effect at once)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        migrate_access(conn)
        self.lock = threading.Lock()
        self.after_write: list[Callable[[], None]] = []

    def bind(self, conn: Any) -> AccessDb:
        """The same tables on another connection (one per thread), sharing the lock and
        the callbacks."""
        other = object.__new__(AccessDb)
        other.__dict__.update(self.__dict__)
        other.conn = conn
        return other

    @contextmanager
    def tx(self) -> Iterator[Any]:
        with self.lock:
            self.conn.begin_write()
            try:
                yield self.conn
                self.conn.commit()
            except BaseException:
                self.conn.rollback()
                raise
            finally:
                for callback in self.after_write:
                    callback()

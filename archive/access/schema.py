"""The access room's tables (prefix access_), applied with archive.db.migrate, and the
one connection, write lock and transaction that the room's stores share (AccessDb)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from archive.db import migrate

ROOM = "access"

STEPS: list[str | dict[str, str]] = [
    """
    CREATE TABLE access_users (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,           -- argon2id, PHC string
        disabled INTEGER NOT NULL DEFAULT 0,
        account_expires TEXT,                  -- UTC ISO datetime; NULL = no expiry
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        password_changed_at TEXT NOT NULL,
        failed_count INTEGER NOT NULL DEFAULT 0,
        first_failed_at TEXT,
        locked_until TEXT
    );
    CREATE TABLE access_roles (
        user TEXT NOT NULL REFERENCES access_users(name) ON DELETE CASCADE,
        role TEXT NOT NULL,
        granted_at TEXT NOT NULL,
        granted_by TEXT NOT NULL,
        PRIMARY KEY (user, role)
    );
    CREATE TABLE access_training (
        id INTEGER PRIMARY KEY,
        user TEXT NOT NULL REFERENCES access_users(name) ON DELETE CASCADE,
        familiarisation INTEGER NOT NULL,
        suite_use INTEGER NOT NULL,
        trained_on TEXT NOT NULL,              -- ISO date
        expires_on TEXT NOT NULL,              -- ISO date, first day without access
        policy_version INTEGER NOT NULL,
        recorded_by TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    );
    CREATE INDEX access_training_user ON access_training(user, trained_on);
    CREATE TABLE access_applications (
        id INTEGER PRIMARY KEY,
        user TEXT NOT NULL REFERENCES access_users(name) ON DELETE CASCADE,
        speciality TEXT NOT NULL,
        approved_by TEXT NOT NULL REFERENCES access_users(name),
        approved_at TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE access_tokens (
        token_id TEXT PRIMARY KEY,             -- public half of the token, for lookup
        user TEXT NOT NULL REFERENCES access_users(name) ON DELETE CASCADE,
        token_hash TEXT NOT NULL,              -- SHA-256 of the whole token
        label TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked_at TEXT,
        last_used_at TEXT
    );
    CREATE INDEX access_tokens_user ON access_tokens(user);
    CREATE TABLE access_dicom_nodes (
        name TEXT PRIMARY KEY,
        aet TEXT NOT NULL,
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        may_store INTEGER NOT NULL DEFAULT 0,
        may_query INTEGER NOT NULL DEFAULT 0,
        UNIQUE (aet, host)
    );
    """,
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
    """
    ALTER TABLE access_users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
    """,
    # Step 4 (issue 21): one workstation registry. A suite workstation is a DICOM node
    # that may query, with its place in the suite; the place used to be kept apart in
    # retired governance workstation table (copied over once by archive.access.nodes).
    """
    ALTER TABLE access_dicom_nodes ADD COLUMN location TEXT;
    ALTER TABLE access_dicom_nodes ADD COLUMN added_by TEXT;
    ALTER TABLE access_dicom_nodes ADD COLUMN added_at TEXT;
    """,
]


def migrate_access(conn: sqlite3.Connection) -> None:
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
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            finally:
                for callback in self.after_write:
                    callback()

"""The access room's tables (prefix access_), applied with archive.db.migrate."""

from __future__ import annotations

import sqlite3

from archive.db import migrate

ROOM = "access"

STEPS = [
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
]


def migrate_access(conn: sqlite3.Connection) -> None:
    migrate(conn, ROOM, STEPS)

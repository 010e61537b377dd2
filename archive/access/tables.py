"""The access room's tables (prefix `access_`) as SQLAlchemy Core, for both dialects.

Declared as they are after every step of schema.STEPS; homes made before issue 27
applied the same steps as SQL scripts and have the same tables. (`user` is a column
name PostgreSQL reserves; SQLAlchemy quotes it where needed.)
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# BIGINT on PostgreSQL; INTEGER on SQLite, where an INTEGER PRIMARY KEY is the rowid.
Int = BigInteger().with_variant(Integer(), "sqlite")


def _user(name: str = "user") -> Column:
    return Column(name, Text, ForeignKey("access_users.name", ondelete="CASCADE"), nullable=False)


users = Table(
    "access_users",
    metadata,
    Column("name", Text, primary_key=True),
    Column("password_hash", Text, nullable=False),  # argon2id, PHC string
    Column("disabled", Int, nullable=False, server_default="0"),
    Column("account_expires", Text),  # UTC ISO datetime; NULL = no expiry
    Column("created_at", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("password_changed_at", Text, nullable=False),
    Column("failed_count", Int, nullable=False, server_default="0"),
    Column("first_failed_at", Text),
    Column("locked_until", Text),
    Column("session_epoch", Int, nullable=False, server_default="0"),  # step 3
)

roles = Table(
    "access_roles",
    metadata,
    Column(
        "user",
        Text,
        ForeignKey("access_users.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("role", Text, primary_key=True),
    Column("granted_at", Text, nullable=False),
    Column("granted_by", Text, nullable=False),
)

training = Table(
    "access_training",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    _user(),
    Column("familiarisation", Int, nullable=False),
    Column("suite_use", Int, nullable=False),
    Column("trained_on", Text, nullable=False),  # ISO date
    Column("expires_on", Text, nullable=False),  # ISO date, first day without access
    Column("policy_version", Int, nullable=False),
    Column("recorded_by", Text, nullable=False),
    Column("recorded_at", Text, nullable=False),
)
Index("access_training_user", training.c.user, training.c.trained_on)

applications = Table(
    "access_applications",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    _user(),
    Column("speciality", Text, nullable=False),
    Column("approved_by", Text, ForeignKey("access_users.name"), nullable=False),
    Column("approved_at", Text, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
)

tokens = Table(
    "access_tokens",
    metadata,
    Column("token_id", Text, primary_key=True),  # public half of the token, for lookup
    _user(),
    Column("token_hash", Text, nullable=False),  # SHA-256 of the whole token
    Column("label", Text, nullable=False, server_default=""),
    Column("created_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("revoked_at", Text),
    Column("last_used_at", Text),
)
Index("access_tokens_user", tokens.c.user)

dicom_nodes = Table(
    "access_dicom_nodes",
    metadata,
    Column("name", Text, primary_key=True),
    Column("aet", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("port", Int, nullable=False),
    Column("may_store", Int, nullable=False, server_default="0"),
    Column("may_query", Int, nullable=False, server_default="0"),
    Column("location", Text),  # step 4: a suite workstation's place
    Column("added_by", Text),
    Column("added_at", Text),
    UniqueConstraint("aet", "host"),
)

# PostgreSQL only (schema step 2): one counter every write to an access_ table bumps
# (by trigger), which each node's ChangeWatch polls.
change_counter = Table(
    "access_change_counter",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

STEP_1_TABLES = (users, roles, training, applications, tokens, dicom_nodes)

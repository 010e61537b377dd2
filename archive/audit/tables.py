"""The audit room's tables: the anchor row (both backends) and the chain on PostgreSQL.

`audit_anchor` (FORMAT.md section 2, anchor.py) is in every archive database. SQLite
homes keep the chain in HOME/data/audit/audit.jsonl; `audit_chain` and
`audit_chain_head` (FORMAT.md section 8) are created in the archive's schema when the
archive is on PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text

metadata = MetaData()
# SQLite's INTEGER; BIGINT on PostgreSQL, as the anchor's first step made it there.
Int = BigInteger().with_variant(Integer(), "sqlite")

# The anchor row, as its step 1 (a SQL script before issue 27) created it.
audit_anchor = Table(
    "audit_anchor",
    metadata,
    Column("log", Text, primary_key=True),
    Column("seq", Int, nullable=False),
    Column("hash", Text, nullable=False),
    Column("format", Int, nullable=False),
    Column("updated", Text, nullable=False),
)
ANCHOR_ROOM = "audit"

audit_chain = Table(
    "audit_chain",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("line", Text, nullable=False),
)

audit_chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("log", Text, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", Text, nullable=False),
    Column("checkpoint", Text),
    Column("format", Integer, nullable=False),
    Column("updated", Text, nullable=False),
)

CHAIN_ROOM = "audit_chain"

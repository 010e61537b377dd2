"""The audit room's tables for the chain on PostgreSQL (FORMAT.md section 8).

SQLite homes keep the chain in HOME/data/audit/audit.jsonl and only use the anchor row
(anchor.py); these tables are created in the archive's schema when the archive is on
PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text

metadata = MetaData()

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

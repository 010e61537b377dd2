"""The vault room's table for attachments kept in the archive database
([storage] kind = "postgresql", archive/vault/FORMAT.md section 6)."""

from __future__ import annotations

from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table, Text

metadata = MetaData()

vault_blob = Table(
    "vault_blob",
    metadata,
    Column("uuid", Text, primary_key=True),
    Column("content_type", Integer, primary_key=True, autoincrement=False),
    Column("envelope", LargeBinary, nullable=False),
)

BLOB_ROOM = "vault_blob"

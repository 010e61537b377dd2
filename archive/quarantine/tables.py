"""The quarantine's tables (prefix `quarantine_`) as SQLAlchemy Core, for both dialects.

Declared as they are after every step of store.SCHEMA; homes made before issue 27 ran
the same steps as SQL scripts and have the same tables.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, Table, Text

metadata = MetaData()
Int = BigInteger().with_variant(Integer(), "sqlite")

items = Table(
    "quarantine_items",
    metadata,
    Column("id", Text, primary_key=True),
    Column("received_at", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("intake", Text, nullable=False),
    Column("modality", Text, nullable=False, server_default=""),
    Column("study_uid", Text),
    Column("patient_pseudonym", Text),
    Column("raw", Int, nullable=False, server_default="0"),
    Column("ingested_by", Text, nullable=False, server_default=""),
    Column("status", Text, nullable=False, server_default="held"),
    Column("decided_by", Text),
    Column("decided_at", Text),
    Column("decision_note", Text),
    # step 2 (issue 5): pixel review
    Column("kind", Text, nullable=False, server_default="deid"),
    Column("series_uid", Text),
    Column("sop_uid", Text),
    Column("flags", Text, nullable=False, server_default="[]"),
    Column("mask_regions", Text),
    Column("image_area", Text),
    Column("masked_by", Text),
    Column("ocr_words_left", Int),
)
Index("quarantine_items_status", items.c.status)

PIXEL_REVIEW_COLUMNS = (
    "kind",
    "series_uid",
    "sop_uid",
    "flags",
    "mask_regions",
    "image_area",
    "masked_by",
    "ocr_words_left",
)

consent = Table(
    "quarantine_consent",
    metadata,
    Column("study_uid", Text, primary_key=True),
    Column("level", Text, nullable=False),
    Column("recorded_by", Text, nullable=False),
    Column("recorded_at", Text, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
)

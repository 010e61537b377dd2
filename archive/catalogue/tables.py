"""The catalogue's tables (prefix `catalogue_`) as SQLAlchemy Core, for both dialects.

Declared as they are after every step of schema.STEPS (which creates them with
archive.db.create_tables); the same columns, keys and indexes the SQL scripts of older
homes made, so those homes need nothing new. Full text is dialect-specific and kept out
of these declarations (schema.py): SQLite's FTS5 table `catalogue_cases_fts` and its
triggers; PostgreSQL's generated `search` tsvector column and GIN index.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
)

metadata = MetaData()

# BIGINT on PostgreSQL; INTEGER on SQLite, where an INTEGER PRIMARY KEY is the rowid.
Int = BigInteger().with_variant(Integer(), "sqlite")


def _text(name: str, default: str | None = None, **kw) -> Column:
    if default is None:
        return Column(name, Text, nullable=False, **kw)
    return Column(name, Text, nullable=False, server_default=default, **kw)


def _count(name: str) -> Column:
    return Column(name, Int, nullable=False, server_default="0")


sequences = Table(
    "catalogue_sequences",
    metadata,
    Column("scope", Text, primary_key=True),
    Column("last_value", Int, nullable=False),
)

cases = Table(
    "catalogue_cases",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    _text("case_id", unique=True),
    _text("study_uid", unique=True),
    _text("orthanc_study_id"),
    _text("patient_pseudonym"),
    _text("modalities", ""),
    _text("body_part", "UNKNOWN"),
    _count("series_count"),
    _count("instance_count"),
    _text("age_band", ""),
    _text("sex", ""),
    _text("level"),
    _text("intake"),
    _text("status"),
    _text("study_description", ""),
    _text("added_at"),
    _text("updated_at"),
    _text("title", ""),
    _text("clinical_history", ""),
    _text("findings", ""),
    _text("diagnosis", ""),
    _text("differential", ""),
    _text("discussion", ""),
    _text("teaching_points", ""),
    _text("anatomy", ""),
    _text("case_references", ""),
    _text("keywords", "[]"),
    _text("authors", "[]"),
    _text("category", ""),
    _text("difficulty", ""),
    _text("review_state", "draft"),
    _text("edited_by", ""),
    _text("edited_at", ""),
    _text("vocabulary_version", ""),
    CheckConstraint("level IN ('limited-access', 'publication')"),
    CheckConstraint("intake IN ('dicom', 'rest', 'watch-folder')"),
    CheckConstraint("status IN ('quarantined', 'available', 'withdrawn')"),
    CheckConstraint("review_state IN ('draft', 'reviewed')"),
)
Index("catalogue_cases_status", cases.c.status, cases.c.added_at)
Index("catalogue_cases_added", cases.c.added_at)
Index("catalogue_cases_title", func.lower(cases.c.title))
Index("catalogue_cases_pseudonym", cases.c.patient_pseudonym)
# SQLite only (schema step 2, measured with benchmarks/bench_search.py at 100,000
# cases): one narrow covering index keyed by id answers FTS5's rowid look-ups and the
# filters without reading the wide rows; search names it (INDEXED BY).
Index(
    "catalogue_cases_facets",
    cases.c.id,
    cases.c.status,
    cases.c.level,
    cases.c.difficulty,
    cases.c.category,
    cases.c.body_part,
    cases.c.modalities,
    cases.c.added_at,
    cases.c.title.collate("NOCASE"),
).ddl_if(dialect="sqlite")

_case_key = ForeignKey("catalogue_cases.id", ondelete="CASCADE")

case_modalities = Table(
    "catalogue_case_modalities",
    metadata,
    Column("modality", Text, primary_key=True),
    Column("case_rowid", Int, _case_key, primary_key=True, autoincrement=False),
    sqlite_with_rowid=False,
)

series = Table(
    "catalogue_series",
    metadata,
    Column(
        "case_rowid",
        Int,
        ForeignKey("catalogue_cases.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("position", Int, nullable=False),
    Column("series_uid", Text, primary_key=True),
    _text("modality", ""),
    _text("description", ""),
    _count("instance_count"),
    _text("orthanc_series_id", ""),
)

collections = Table(
    "catalogue_collections",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    _text("collection_id", unique=True),
    _text("title"),
    _text("description", ""),
    _text("owner"),
    _text("created_at"),
    _text("updated_at"),
)

collection_items = Table(
    "catalogue_collection_items",
    metadata,
    Column(
        "collection_rowid",
        Int,
        ForeignKey("catalogue_collections.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column(
        "case_rowid",
        Int,
        ForeignKey("catalogue_cases.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("position", Int, nullable=False),
    _text("added_at"),
)
Index("catalogue_collection_items_case", collection_items.c.case_rowid)

collection_editors = Table(
    "catalogue_collection_editors",
    metadata,
    Column(
        "collection_rowid",
        Int,
        ForeignKey("catalogue_collections.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    _text("editor", primary_key=True),
    _text("added_by"),
    _text("added_at"),
)

# Tables of schema step 1 (step 3 added the editors).
STEP_1_TABLES = (sequences, cases, case_modalities, series, collections, collection_items)

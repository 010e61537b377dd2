"""The catalogue's schema steps (tables in tables.py), applied with archive.db.migrate.

The tables are SQLAlchemy Core declarations (tables.py), created for either dialect by
step 1. Full text is the one thing each backend does its own way:

- SQLite: an FTS5 *external-content* table over catalogue_cases, kept in step by
  triggers, so the text is stored once and the index can never drift from the rows.
  The update trigger fires only when an indexed column changes: status and level flips
  (withdrawal, promotion) do not rewrite the index.
- PostgreSQL: a generated `tsvector` column `search` with per-field weights
  (setweight A..D) and a GIN index; repository.PostgresCatalogueRepository searches it.

Homes made before issue 27 applied the same steps as SQL scripts; the declarations give
the same tables, and steps 2 and 4 are written to be right on both kinds of home.
"""

from __future__ import annotations

from archive.catalogue import tables
from archive.db import create_tables

ROOM = "catalogue"

# Columns indexed for full text, in bm25 weight order (see repository.BM25_WEIGHTS).
FTS_COLUMNS = (
    "title",
    "diagnosis",
    "keywords",
    "findings",
    "clinical_history",
    "differential",
    "discussion",
    "teaching_points",
    "anatomy",
    "category",
    "body_part",
    "modalities",
    "study_description",
)

_cols = ", ".join(FTS_COLUMNS)
_new = ", ".join(f"new.{c}" for c in FTS_COLUMNS)
_old = ", ".join(f"old.{c}" for c in FTS_COLUMNS)

_FTS = """
CREATE VIRTUAL TABLE catalogue_cases_fts USING fts5 (
    {cols},
    content='catalogue_cases', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER catalogue_cases_fts_insert AFTER INSERT ON catalogue_cases BEGIN
    INSERT INTO catalogue_cases_fts (rowid, {cols}) VALUES (new.id, {new});
END;

CREATE TRIGGER catalogue_cases_fts_delete AFTER DELETE ON catalogue_cases BEGIN
    INSERT INTO catalogue_cases_fts (catalogue_cases_fts, rowid, {cols})
    VALUES ('delete', old.id, {old});
END;

CREATE TRIGGER catalogue_cases_fts_update AFTER UPDATE OF {cols} ON catalogue_cases BEGIN
    INSERT INTO catalogue_cases_fts (catalogue_cases_fts, rowid, {cols})
    VALUES ('delete', old.id, {old});
    INSERT INTO catalogue_cases_fts (rowid, {cols}) VALUES (new.id, {new});
END;
"""

# Built by replacement of fixed column names (never user input).
SQLITE_FTS = _FTS.replace("{cols}", _cols).replace("{new}", _new).replace("{old}", _old)

# PostgreSQL: FTS5 and its triggers become a generated, weighted tsvector with a GIN
# index. PostgreSQL has four weights (A..D) where bm25 had one per
# column; the columns are grouped in the same order of importance. `catalogue_english`
# stems like FTS5's porter tokenizer and, like it, keeps common words searchable.
_PG_WEIGHTS = {
    "A": ("title", "diagnosis"),
    "B": ("keywords", "findings"),
    "C": ("differential", "anatomy", "category", "body_part", "modalities"),
    "D": ("clinical_history", "teaching_points", "discussion", "study_description"),
}
assert sorted(c for cols in _PG_WEIGHTS.values() for c in cols) == sorted(FTS_COLUMNS)
_SPACE = " || ' ' || "
_PG_SEARCH = " ||\n        ".join(
    f"setweight(to_tsvector('catalogue_english', {_SPACE.join(cols)}), '{weight}')"
    for weight, cols in _PG_WEIGHTS.items()
)

PG_TEXT_SEARCH = """
CREATE TEXT SEARCH DICTIONARY catalogue_english_stem (TEMPLATE = snowball, Language = english);
CREATE TEXT SEARCH CONFIGURATION catalogue_english (COPY = english);
ALTER TEXT SEARCH CONFIGURATION catalogue_english
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part
    WITH catalogue_english_stem;
"""

PG_SEARCH_COLUMN = """
ALTER TABLE catalogue_cases ADD COLUMN search tsvector GENERATED ALWAYS AS (
        {search}
    ) STORED;
CREATE INDEX catalogue_cases_search ON catalogue_cases USING GIN (search);
""".replace("{search}", _PG_SEARCH)

STEP_1 = (
    {"sqlite": "", "postgresql": PG_TEXT_SEARCH},
    create_tables(tables.metadata, tables.STEP_1_TABLES),
    {"sqlite": SQLITE_FTS, "postgresql": PG_SEARCH_COLUMN},
)
# Step 2, measured with benchmarks/bench_search.py at 100,000 cases: the wide case rows
# (kilobytes of teaching text each) made every filter check after an FTS match a page
# read. One narrow covering index keyed by id answers the rowid lookups and the filters
# from the index alone; the single-column indexes on low-cardinality facets made the
# planner pick them and then read the wide rows, so they go.
# Written to be right after either step 1: the old script's (four single-column
# indexes) and the declared tables' (the covering index already there).
STEP_2 = {
    "sqlite": """
DROP INDEX IF EXISTS catalogue_cases_body_part;
DROP INDEX IF EXISTS catalogue_cases_category;
DROP INDEX IF EXISTS catalogue_cases_difficulty;
DROP INDEX IF EXISTS catalogue_cases_level;
CREATE INDEX IF NOT EXISTS catalogue_cases_facets ON catalogue_cases (
    id, status, level, difficulty, category, body_part, modalities, added_at,
    title COLLATE NOCASE
);
""",
    "postgresql": "",  # a SQLite planner measure; PostgreSQL has nothing to do
}

# Step 3 (issue 21): a collection's owner edits it and may share editing with named
# users; existing collections keep their recorded creator as owner (the `owner` column
# was always filled), so nothing needs back-filling.
STEP_3 = create_tables(tables.metadata, [tables.collection_editors])

# Step 4 (issue 27): titles sort by lower(title) on both backends (COLLATE NOCASE is
# SQLite's); the title index of older SQLite homes follows.
STEP_4 = {
    "sqlite": """
DROP INDEX IF EXISTS catalogue_cases_title;
CREATE INDEX catalogue_cases_title ON catalogue_cases (lower(title));
""",
    "postgresql": "",
}

STEPS = [STEP_1, STEP_2, STEP_3, STEP_4]

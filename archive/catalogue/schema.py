"""The catalogue's tables (prefix `catalogue_`), applied with archive.db.migrate.

Full text lives in an FTS5 *external-content* table over catalogue_cases, kept in step
by triggers, so the text is stored once and the index can never drift from the rows.
The update trigger fires only when an indexed column changes: status and level flips
(withdrawal, promotion) do not rewrite the index.

PostgreSQL ([database] kind = "postgresql"): the same tables; the FTS table and its
triggers become a generated `tsvector` column with per-field weights (setweight A..D)
and a GIN index (PG_STEP_1). repository.PostgresCatalogueRepository searches it.
"""

from __future__ import annotations

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

_STEP_1_TEMPLATE = """
CREATE TABLE catalogue_sequences (
    scope TEXT PRIMARY KEY,
    last_value INTEGER NOT NULL
);

CREATE TABLE catalogue_cases (
    id INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL UNIQUE,
    study_uid TEXT NOT NULL UNIQUE,
    orthanc_study_id TEXT NOT NULL,
    patient_pseudonym TEXT NOT NULL,
    modalities TEXT NOT NULL DEFAULT '',
    body_part TEXT NOT NULL DEFAULT 'UNKNOWN',
    series_count INTEGER NOT NULL DEFAULT 0,
    instance_count INTEGER NOT NULL DEFAULT 0,
    age_band TEXT NOT NULL DEFAULT '',
    sex TEXT NOT NULL DEFAULT '',
    level TEXT NOT NULL CHECK (level IN ('limited-access', 'publication')),
    intake TEXT NOT NULL CHECK (intake IN ('dicom', 'rest', 'watch-folder')),
    status TEXT NOT NULL CHECK (status IN ('quarantined', 'available', 'withdrawn')),
    study_description TEXT NOT NULL DEFAULT '',
    added_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    clinical_history TEXT NOT NULL DEFAULT '',
    findings TEXT NOT NULL DEFAULT '',
    diagnosis TEXT NOT NULL DEFAULT '',
    differential TEXT NOT NULL DEFAULT '',
    discussion TEXT NOT NULL DEFAULT '',
    teaching_points TEXT NOT NULL DEFAULT '',
    anatomy TEXT NOT NULL DEFAULT '',
    case_references TEXT NOT NULL DEFAULT '',
    keywords TEXT NOT NULL DEFAULT '[]',
    authors TEXT NOT NULL DEFAULT '[]',
    category TEXT NOT NULL DEFAULT '',
    difficulty TEXT NOT NULL DEFAULT '',
    review_state TEXT NOT NULL DEFAULT 'draft' CHECK (review_state IN ('draft', 'reviewed')),
    edited_by TEXT NOT NULL DEFAULT '',
    edited_at TEXT NOT NULL DEFAULT '',
    vocabulary_version TEXT NOT NULL DEFAULT ''
);
CREATE INDEX catalogue_cases_status ON catalogue_cases (status, added_at);
CREATE INDEX catalogue_cases_body_part ON catalogue_cases (body_part);
CREATE INDEX catalogue_cases_category ON catalogue_cases (category);
CREATE INDEX catalogue_cases_difficulty ON catalogue_cases (difficulty);
CREATE INDEX catalogue_cases_level ON catalogue_cases (level);
CREATE INDEX catalogue_cases_added ON catalogue_cases (added_at);
CREATE INDEX catalogue_cases_title ON catalogue_cases (title COLLATE NOCASE);
CREATE INDEX catalogue_cases_pseudonym ON catalogue_cases (patient_pseudonym);

CREATE TABLE catalogue_case_modalities (
    modality TEXT NOT NULL,
    case_rowid INTEGER NOT NULL REFERENCES catalogue_cases (id) ON DELETE CASCADE,
    PRIMARY KEY (modality, case_rowid)
) WITHOUT ROWID;

CREATE TABLE catalogue_series (
    case_rowid INTEGER NOT NULL REFERENCES catalogue_cases (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    series_uid TEXT NOT NULL,
    modality TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    instance_count INTEGER NOT NULL DEFAULT 0,
    orthanc_series_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (case_rowid, series_uid)
);

CREATE TABLE catalogue_collections (
    id INTEGER PRIMARY KEY,
    collection_id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE catalogue_collection_items (
    collection_rowid INTEGER NOT NULL REFERENCES catalogue_collections (id) ON DELETE CASCADE,
    case_rowid INTEGER NOT NULL REFERENCES catalogue_cases (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (collection_rowid, case_rowid)
);
CREATE INDEX catalogue_collection_items_case ON catalogue_collection_items (case_rowid);

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
STEP_1 = _STEP_1_TEMPLATE.replace("{cols}", _cols).replace("{new}", _new).replace("{old}", _old)
# Step 2, measured with benchmarks/bench_search.py at 100,000 cases: the wide case rows
# (kilobytes of teaching text each) made every filter check after an FTS match a page
# read. One narrow covering index keyed by id answers the rowid lookups and the filters
# from the index alone; the single-column indexes on low-cardinality facets made the
# planner pick them and then read the wide rows, so they go.
STEP_2 = """
DROP INDEX catalogue_cases_body_part;
DROP INDEX catalogue_cases_category;
DROP INDEX catalogue_cases_difficulty;
DROP INDEX catalogue_cases_level;
CREATE INDEX catalogue_cases_facets ON catalogue_cases (
    id, status, level, difficulty, category, body_part, modalities, added_at,
    title COLLATE NOCASE
);
"""


# PostgreSQL: the same tables; FTS5 and its triggers become a generated, weighted
# tsvector with a GIN index. PostgreSQL has four weights (A..D) where bm25 had one per
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

PG_STEP_1 = """
CREATE TEXT SEARCH DICTIONARY catalogue_english_stem (TEMPLATE = snowball, Language = english);
CREATE TEXT SEARCH CONFIGURATION catalogue_english (COPY = english);
ALTER TEXT SEARCH CONFIGURATION catalogue_english
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part
    WITH catalogue_english_stem;

CREATE TABLE catalogue_sequences (
    scope TEXT PRIMARY KEY,
    last_value BIGINT NOT NULL
);

CREATE TABLE catalogue_cases (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    case_id TEXT NOT NULL UNIQUE,
    study_uid TEXT NOT NULL UNIQUE,
    orthanc_study_id TEXT NOT NULL,
    patient_pseudonym TEXT NOT NULL,
    modalities TEXT NOT NULL DEFAULT '',
    body_part TEXT NOT NULL DEFAULT 'UNKNOWN',
    series_count BIGINT NOT NULL DEFAULT 0,
    instance_count BIGINT NOT NULL DEFAULT 0,
    age_band TEXT NOT NULL DEFAULT '',
    sex TEXT NOT NULL DEFAULT '',
    level TEXT NOT NULL CHECK (level IN ('limited-access', 'publication')),
    intake TEXT NOT NULL CHECK (intake IN ('dicom', 'rest', 'watch-folder')),
    status TEXT NOT NULL CHECK (status IN ('quarantined', 'available', 'withdrawn')),
    study_description TEXT NOT NULL DEFAULT '',
    added_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    clinical_history TEXT NOT NULL DEFAULT '',
    findings TEXT NOT NULL DEFAULT '',
    diagnosis TEXT NOT NULL DEFAULT '',
    differential TEXT NOT NULL DEFAULT '',
    discussion TEXT NOT NULL DEFAULT '',
    teaching_points TEXT NOT NULL DEFAULT '',
    anatomy TEXT NOT NULL DEFAULT '',
    case_references TEXT NOT NULL DEFAULT '',
    keywords TEXT NOT NULL DEFAULT '[]',
    authors TEXT NOT NULL DEFAULT '[]',
    category TEXT NOT NULL DEFAULT '',
    difficulty TEXT NOT NULL DEFAULT '',
    review_state TEXT NOT NULL DEFAULT 'draft' CHECK (review_state IN ('draft', 'reviewed')),
    edited_by TEXT NOT NULL DEFAULT '',
    edited_at TEXT NOT NULL DEFAULT '',
    vocabulary_version TEXT NOT NULL DEFAULT '',
    search tsvector GENERATED ALWAYS AS (
        {search}
    ) STORED
);
CREATE INDEX catalogue_cases_status ON catalogue_cases (status, added_at);
CREATE INDEX catalogue_cases_added ON catalogue_cases (added_at);
CREATE INDEX catalogue_cases_title ON catalogue_cases (lower(title));
CREATE INDEX catalogue_cases_pseudonym ON catalogue_cases (patient_pseudonym);
CREATE INDEX catalogue_cases_search ON catalogue_cases USING GIN (search);

CREATE TABLE catalogue_case_modalities (
    modality TEXT NOT NULL,
    case_rowid BIGINT NOT NULL REFERENCES catalogue_cases (id) ON DELETE CASCADE,
    PRIMARY KEY (modality, case_rowid)
);

CREATE TABLE catalogue_series (
    case_rowid BIGINT NOT NULL REFERENCES catalogue_cases (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    series_uid TEXT NOT NULL,
    modality TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    instance_count BIGINT NOT NULL DEFAULT 0,
    orthanc_series_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (case_rowid, series_uid)
);

CREATE TABLE catalogue_collections (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    collection_id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE catalogue_collection_items (
    collection_rowid BIGINT NOT NULL REFERENCES catalogue_collections (id) ON DELETE CASCADE,
    case_rowid BIGINT NOT NULL REFERENCES catalogue_cases (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (collection_rowid, case_rowid)
);
CREATE INDEX catalogue_collection_items_case ON catalogue_collection_items (case_rowid);
""".replace("{search}", _PG_SEARCH)

# Step 2 (the covering index) is a SQLite planner measure; PostgreSQL has nothing to do.
# Step 3 (issue 21): a collection's owner edits it and may share editing with named
# users; existing collections keep their recorded creator as owner (the `owner` column
# was always filled), so nothing needs back-filling.
STEP_3 = """
CREATE TABLE catalogue_collection_editors (
    collection_rowid INTEGER NOT NULL REFERENCES catalogue_collections (id) ON DELETE CASCADE,
    editor TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (collection_rowid, editor)
);
"""
PG_STEP_3 = STEP_3.replace("INTEGER NOT NULL REFERENCES", "BIGINT NOT NULL REFERENCES")

STEPS = [
    {"sqlite": STEP_1, "postgresql": PG_STEP_1},
    {"sqlite": STEP_2, "postgresql": ""},
    {"sqlite": STEP_3, "postgresql": PG_STEP_3},
]

"""The SQLite schema steps of rooms as the code before issue 27 wrote them, verbatim.

Tests build a home "made by the old code" from these (the steps and their
schema_steps rows) and check that the new code opens and migrates it. Frozen: never
edit these to match new code.
"""

# ruff: noqa: E501 - the scripts are kept exactly as they were

# archive/catalogue/schema.py before issue 27 (room "catalogue", steps 1-3, SQLite).
CATALOGUE_STEPS = [
    """
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
    title, diagnosis, keywords, findings, clinical_history, differential, discussion, teaching_points, anatomy, category, body_part, modalities, study_description,
    content='catalogue_cases', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER catalogue_cases_fts_insert AFTER INSERT ON catalogue_cases BEGIN
    INSERT INTO catalogue_cases_fts (rowid, title, diagnosis, keywords, findings, clinical_history, differential, discussion, teaching_points, anatomy, category, body_part, modalities, study_description) VALUES (new.id, new.title, new.diagnosis, new.keywords, new.findings, new.clinical_history, new.differential, new.discussion, new.teaching_points, new.anatomy, new.category, new.body_part, new.modalities, new.study_description);
END;

CREATE TRIGGER catalogue_cases_fts_delete AFTER DELETE ON catalogue_cases BEGIN
    INSERT INTO catalogue_cases_fts (catalogue_cases_fts, rowid, title, diagnosis, keywords, findings, clinical_history, differential, discussion, teaching_points, anatomy, category, body_part, modalities, study_description)
    VALUES ('delete', old.id, old.title, old.diagnosis, old.keywords, old.findings, old.clinical_history, old.differential, old.discussion, old.teaching_points, old.anatomy, old.category, old.body_part, old.modalities, old.study_description);
END;

CREATE TRIGGER catalogue_cases_fts_update AFTER UPDATE OF title, diagnosis, keywords, findings, clinical_history, differential, discussion, teaching_points, anatomy, category, body_part, modalities, study_description ON catalogue_cases BEGIN
    INSERT INTO catalogue_cases_fts (catalogue_cases_fts, rowid, title, diagnosis, keywords, findings, clinical_history, differential, discussion, teaching_points, anatomy, category, body_part, modalities, study_description)
    VALUES ('delete', old.id, old.title, old.diagnosis, old.keywords, old.findings, old.clinical_history, old.differential, old.discussion, old.teaching_points, old.anatomy, old.category, old.body_part, old.modalities, old.study_description);
    INSERT INTO catalogue_cases_fts (rowid, title, diagnosis, keywords, findings, clinical_history, differential, discussion, teaching_points, anatomy, category, body_part, modalities, study_description) VALUES (new.id, new.title, new.diagnosis, new.keywords, new.findings, new.clinical_history, new.differential, new.discussion, new.teaching_points, new.anatomy, new.category, new.body_part, new.modalities, new.study_description);
END;
""",
    """
DROP INDEX catalogue_cases_body_part;
DROP INDEX catalogue_cases_category;
DROP INDEX catalogue_cases_difficulty;
DROP INDEX catalogue_cases_level;
CREATE INDEX catalogue_cases_facets ON catalogue_cases (
    id, status, level, difficulty, category, body_part, modalities, added_at,
    title COLLATE NOCASE
);
""",
    """
CREATE TABLE catalogue_collection_editors (
    collection_rowid INTEGER NOT NULL REFERENCES catalogue_collections (id) ON DELETE CASCADE,
    editor TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (collection_rowid, editor)
);
""",
]


# archive/access/schema.py before issue 27 (room "access", steps 1-4; step 2 is
# PostgreSQL only and empty on SQLite).
ACCESS_STEPS = [
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
    """""",
    """
    ALTER TABLE access_users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
    """,
    """
    ALTER TABLE access_dicom_nodes ADD COLUMN location TEXT;
    ALTER TABLE access_dicom_nodes ADD COLUMN added_by TEXT;
    ALTER TABLE access_dicom_nodes ADD COLUMN added_at TEXT;
    """,
]


# archive/quarantine/store.py before issue 27 (room "quarantine", steps 1-2).
QUARANTINE_STEPS = [
    """
    CREATE TABLE quarantine_items (
        id TEXT PRIMARY KEY,
        received_at TEXT NOT NULL,
        reason TEXT NOT NULL,
        intake TEXT NOT NULL,
        modality TEXT NOT NULL DEFAULT '',
        study_uid TEXT,
        patient_pseudonym TEXT,
        raw INTEGER NOT NULL DEFAULT 0,
        ingested_by TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'held',
        decided_by TEXT,
        decided_at TEXT,
        decision_note TEXT
    );
    CREATE INDEX quarantine_items_status ON quarantine_items (status);
    """,
    """
    ALTER TABLE quarantine_items ADD COLUMN kind TEXT NOT NULL DEFAULT 'deid';
    ALTER TABLE quarantine_items ADD COLUMN series_uid TEXT;
    ALTER TABLE quarantine_items ADD COLUMN sop_uid TEXT;
    ALTER TABLE quarantine_items ADD COLUMN flags TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE quarantine_items ADD COLUMN mask_regions TEXT;
    ALTER TABLE quarantine_items ADD COLUMN image_area TEXT;
    ALTER TABLE quarantine_items ADD COLUMN masked_by TEXT;
    ALTER TABLE quarantine_items ADD COLUMN ocr_words_left INTEGER;
    CREATE TABLE quarantine_consent (
        study_uid TEXT PRIMARY KEY,
        level TEXT NOT NULL,
        recorded_by TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT ''
    );
    """,
]

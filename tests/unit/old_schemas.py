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


# archive/governance/_store.py before issue 27 (room "governance", steps 1-2).
GOVERNANCE_STEPS = [
    """
CREATE TABLE governance_removal_requests (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  purpose TEXT NOT NULL,
  destination TEXT NOT NULL,
  requester TEXT NOT NULL,
  requester_roles TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending','approved','refused','exported','expired')),
  created_at TEXT NOT NULL,
  policy_version TEXT NOT NULL
);
CREATE TABLE governance_removal_cases (
  request_id INTEGER NOT NULL REFERENCES governance_removal_requests(id),
  case_id TEXT NOT NULL,
  level_at_request TEXT NOT NULL,
  PRIMARY KEY (request_id, case_id)
);
CREATE TABLE governance_removal_approvals (
  request_id INTEGER PRIMARY KEY REFERENCES governance_removal_requests(id),
  approver TEXT NOT NULL,
  approver_role TEXT NOT NULL,
  approved_at TEXT NOT NULL,
  text TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  max_downloads INTEGER NOT NULL CHECK (max_downloads >= 1),
  downloads_used INTEGER NOT NULL DEFAULT 0 CHECK (downloads_used <= max_downloads),
  policy_version TEXT NOT NULL
);
CREATE TABLE governance_removal_refusals (
  request_id INTEGER PRIMARY KEY REFERENCES governance_removal_requests(id),
  approver TEXT NOT NULL,
  approver_role TEXT NOT NULL,
  refused_at TEXT NOT NULL,
  reason TEXT NOT NULL
);
CREATE TABLE governance_removal_downloads (
  request_id INTEGER NOT NULL REFERENCES governance_removal_requests(id),
  download_number INTEGER NOT NULL,
  authorised_at TEXT NOT NULL,
  PRIMARY KEY (request_id, download_number)
);
CREATE TABLE governance_pulls (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  case_id TEXT NOT NULL,
  workstation TEXT NOT NULL,
  user TEXT NOT NULL,
  pulled_at TEXT NOT NULL
);
CREATE INDEX governance_pulls_ws ON governance_pulls (workstation, pulled_at);
CREATE INDEX governance_pulls_case ON governance_pulls (case_id);
CREATE TABLE governance_workstation_wipes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  workstation TEXT NOT NULL,
  attested_by TEXT NOT NULL,
  wiped_at TEXT NOT NULL,
  method TEXT NOT NULL,
  notes TEXT NOT NULL DEFAULT '',
  recorded_at TEXT NOT NULL
);
CREATE TABLE governance_recipients (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  organisation TEXT NOT NULL,
  kind TEXT NOT NULL,
  contact TEXT NOT NULL,
  dicom_aet TEXT,
  dicom_host TEXT,
  dicom_port INTEGER,
  public_key TEXT,
  data_sharing_agreement INTEGER NOT NULL,
  added_by TEXT NOT NULL,
  added_at TEXT NOT NULL,
  active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE governance_share_proposals (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  recipient_id INTEGER NOT NULL REFERENCES governance_recipients(id),
  purpose TEXT NOT NULL,
  proposer TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('proposed','approved','rejected','shared','revoked')),
  created_at TEXT NOT NULL,
  policy_version TEXT NOT NULL
);
CREATE TABLE governance_share_proposal_cases (
  proposal_id INTEGER NOT NULL REFERENCES governance_share_proposals(id),
  case_id TEXT NOT NULL,
  PRIMARY KEY (proposal_id, case_id)
);
CREATE TABLE governance_board_decisions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  subject TEXT NOT NULL CHECK (subject IN ('share','closure')),
  proposal_id INTEGER REFERENCES governance_share_proposals(id),
  outcome TEXT NOT NULL,
  meeting_date TEXT NOT NULL,
  minute_reference TEXT NOT NULL,
  decision_text TEXT NOT NULL,
  receiving_recipient_id INTEGER REFERENCES governance_recipients(id),
  quorum_required INTEGER NOT NULL,
  quorum_counted INTEGER NOT NULL,
  recorded_by TEXT NOT NULL,
  recorded_at TEXT NOT NULL,
  policy_version TEXT NOT NULL
);
CREATE TABLE governance_board_votes (
  decision_id INTEGER NOT NULL REFERENCES governance_board_decisions(id),
  member TEXT NOT NULL,
  counted INTEGER NOT NULL,
  note TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (decision_id, member)
);
CREATE TABLE governance_undertakings (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  proposal_id INTEGER NOT NULL REFERENCES governance_share_proposals(id),
  signed_sha256 TEXT NOT NULL,
  signatory_name TEXT NOT NULL,
  signatory_role TEXT NOT NULL,
  organisation TEXT NOT NULL,
  signed_on TEXT NOT NULL,
  stored_ref TEXT NOT NULL,
  recorded_by TEXT NOT NULL,
  recorded_at TEXT NOT NULL
);
CREATE TABLE governance_share_executions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  proposal_id INTEGER NOT NULL REFERENCES governance_share_proposals(id),
  decision_id INTEGER NOT NULL REFERENCES governance_board_decisions(id),
  undertaking_id INTEGER NOT NULL REFERENCES governance_undertakings(id),
  method TEXT NOT NULL CHECK (method IN ('cstore','package')),
  destination TEXT NOT NULL,
  manifest_sha256 TEXT NOT NULL,
  executed_by TEXT NOT NULL,
  executed_at TEXT NOT NULL
);
CREATE TABLE governance_share_items (
  share_id INTEGER NOT NULL REFERENCES governance_share_executions(id),
  case_id TEXT NOT NULL,
  sop_instance_uid TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  PRIMARY KEY (share_id, sop_instance_uid)
);
CREATE TABLE governance_share_requests (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  share_id INTEGER NOT NULL REFERENCES governance_share_executions(id),
  kind TEXT NOT NULL CHECK (kind IN ('revocation','deletion')),
  reason TEXT NOT NULL,
  requested_by TEXT NOT NULL,
  requested_at TEXT NOT NULL
);
CREATE TABLE governance_share_confirmations (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  request_id INTEGER NOT NULL REFERENCES governance_share_requests(id),
  confirmed_by TEXT NOT NULL,
  confirmed_on TEXT NOT NULL,
  evidence_ref TEXT NOT NULL,
  recorded_at TEXT NOT NULL
);
CREATE TABLE governance_closure_transfers (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  decision_id INTEGER NOT NULL REFERENCES governance_board_decisions(id),
  method TEXT NOT NULL CHECK (method IN ('cstore','package')),
  manifest_sha256 TEXT NOT NULL,
  instance_count INTEGER NOT NULL,
  executed_by TEXT NOT NULL,
  executed_at TEXT NOT NULL
);
CREATE TABLE governance_closure_transfer_items (
  transfer_id INTEGER NOT NULL REFERENCES governance_closure_transfers(id),
  case_id TEXT NOT NULL,
  sop_instance_uid TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  PRIMARY KEY (transfer_id, sop_instance_uid)
);
CREATE TABLE governance_closure_receipts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  transfer_id INTEGER NOT NULL REFERENCES governance_closure_transfers(id),
  manifest_sha256 TEXT NOT NULL,
  signed_document_sha256 TEXT NOT NULL DEFAULT '',
  stored_ref TEXT NOT NULL DEFAULT '',
  received_by TEXT NOT NULL,
  organisation TEXT NOT NULL,
  received_on TEXT NOT NULL,
  recorded_by TEXT NOT NULL,
  recorded_at TEXT NOT NULL
);
CREATE TABLE governance_wipe_confirmations (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  decision_id INTEGER NOT NULL REFERENCES governance_board_decisions(id),
  user TEXT NOT NULL,
  user_key TEXT NOT NULL,
  role TEXT NOT NULL,
  confirmed_at TEXT NOT NULL
);
CREATE TABLE governance_wipe_authorisations (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  decision_id INTEGER NOT NULL REFERENCES governance_board_decisions(id),
  confirmers TEXT NOT NULL,
  authorised_at TEXT NOT NULL
);
CREATE TABLE governance_wipe_certificates (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  authorisation_id INTEGER NOT NULL REFERENCES governance_wipe_authorisations(id),
  certificate_sha256 TEXT NOT NULL,
  signature_hex TEXT NOT NULL,
  finalised_at TEXT NOT NULL
);
CREATE TABLE governance_optout (
  pseudonym_sha256 TEXT PRIMARY KEY,
  added_by TEXT NOT NULL,
  added_at TEXT NOT NULL
);
CREATE TABLE governance_withdrawals (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  pseudonym_sha256 TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('withdrawal','objection')),
  requested_by TEXT NOT NULL,
  recorded_by TEXT NOT NULL,
  recorded_at TEXT NOT NULL
);
CREATE TABLE governance_withdrawn_cases (
  withdrawal_id INTEGER NOT NULL REFERENCES governance_withdrawals(id),
  case_id TEXT NOT NULL,
  PRIMARY KEY (withdrawal_id, case_id)
);
CREATE INDEX governance_withdrawn_case ON governance_withdrawn_cases (case_id);
""",
    """
CREATE TABLE governance_board_member_votes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  decision_id INTEGER NOT NULL REFERENCES governance_board_decisions(id),
  member TEXT NOT NULL,
  member_key TEXT NOT NULL,
  counted INTEGER NOT NULL,
  self_cast INTEGER NOT NULL,
  note TEXT NOT NULL DEFAULT '',
  cast_at TEXT NOT NULL,
  UNIQUE (decision_id, member_key)
);
INSERT INTO governance_board_member_votes
  (decision_id, member, member_key, counted, self_cast, note, cast_at)
  SELECT v.decision_id, v.member, lower(trim(v.member)), v.counted, 0,
         'named by ' || d.recorded_by || ', not self-cast: does not count', d.recorded_at
  FROM governance_board_votes v JOIN governance_board_decisions d ON d.id = v.decision_id;
UPDATE governance_board_decisions SET quorum_counted = 0;
UPDATE governance_share_proposals SET status = 'proposed' WHERE status = 'approved';
""",
]

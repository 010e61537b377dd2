"""Shared plumbing of the governance room: schema, transactions, times, ids, hashes.

All times are explicit, timezone-aware datetimes passed by the caller (so tests control
the clock) and are stored as UTC ISO-8601 strings, which sort chronologically.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator, Sequence, Set
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import inspect, literal_column, update

from archive.db import Step, add_columns, migrate
from archive.governance import tables
from archive.governance.errors import InvalidInputError

ROOM = "governance"

_SCHEMA_V1 = """
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
"""

# The tables these steps make are declared for SQLAlchemy Core in tables.py (the
# modules converted so far use them). The steps stay SQL scripts until the room's
# last module moves: three tables are still read in insertion order (rowid).

# Issue 21: people act for themselves. Each Board member's vote is their own row, cast
# from their own authenticated session; (decision, member) is unique. The approvers
# that whoever recorded a decision typed in before are kept as the minutes had them,
# marked not self-cast, and no longer count: a decision they carried needs its members'
# own votes again before anything acts on it (fail closed), and a proposal approved
# that way and not yet shared goes back to "proposed" until they have voted.
_SCHEMA_V2_BOARD_VOTES = """
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
"""


def _case_order(conn: Any) -> None:
    """Step 3 (issue 27): the cases of a removal request, share proposal and withdrawal
    keep the order given in a `position` column, backfilled from the rowid that held
    it (SQLite's own; the hidden one archive.db.postgres adds on PostgreSQL)."""
    for table in (tables.removal_cases, tables.share_proposal_cases, tables.withdrawn_cases):
        present = {c["name"] for c in inspect(conn._sa).get_columns(table.name)}
        if "position" in present:
            continue
        add_columns(table, ["position"])(conn)
        conn.execute(update(table).values(position=literal_column("rowid")))


SCHEMA_STEPS: list[Step] = [_SCHEMA_V1, _SCHEMA_V2_BOARD_VOTES, _case_order]


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the governance tables (idempotent)."""
    migrate(conn, ROOM, SCHEMA_STEPS)


@contextmanager
def transaction(conn: Any) -> Iterator[Any]:
    """One write transaction taken up front, so read-check-write steps are atomic
    across the CLI and the Orthanc plugin writing the same file. Inside a use case's
    transaction (archive.core.perform holds one) the step joins it: the use case commits
    or rolls back everything once."""
    if conn.in_transaction:
        yield conn
        return
    with conn.write():
        yield conn


def ts(moment: datetime, name: str = "now") -> str:
    """A timezone-aware datetime as a UTC ISO string; naive datetimes are refused,
    because a local wall-clock time would make expiries ambiguous."""
    if not isinstance(moment, datetime):
        raise InvalidInputError(f"{name} must be a datetime, not {type(moment).__name__}.")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInputError(
            f"{name} must be timezone-aware (e.g. datetime.now(UTC)); a naive time is ambiguous."
        )
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def day(value: date, name: str) -> str:
    """A calendar date as ISO text (meeting dates, signing dates)."""
    if isinstance(value, datetime) or not isinstance(value, date):
        raise InvalidInputError(f"{name} must be a date (YYYY-MM-DD), not {value!r}.")
    return value.isoformat()


def clean_text(value: object, name: str, *, max_len: int = 4000) -> str:
    """A required, non-blank free-text field, trimmed."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{name} is required and must not be blank.")
    value = value.strip()
    if len(value) > max_len:
        raise InvalidInputError(f"{name} is too long ({len(value)} > {max_len} characters).")
    return value


def person_key(name: str) -> str:
    """How two records are judged to name the same person: case and spacing ignored."""
    return " ".join(name.split()).casefold()


def clean_case_ids(values: Sequence[str], name: str = "case_ids") -> list[str]:
    """Validated, de-duplicated case ids in the order given."""
    if isinstance(values, str):
        raise InvalidInputError(f"{name} must be a list of case ids, not one string.")
    out: list[str] = []
    for value in values:
        cid = clean_text(value, "case id", max_len=128)
        if cid not in out:
            out.append(cid)
    if not out:
        raise InvalidInputError(f"{name} must name at least one case.")
    return out


def clean_roles(values: Sequence[str] | Set[str], name: str = "roles") -> frozenset[str]:
    if isinstance(values, str):
        raise InvalidInputError(f"{name} must be a collection of role names, not one string.")
    return frozenset(str(v).strip() for v in values if str(v).strip())


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")


def sha256_hex(value: object, name: str = "sha256") -> str:
    if not isinstance(value, str) or not _SHA256.match(value.strip().lower()):
        raise InvalidInputError(f"{name} must be a SHA-256 as 64 hexadecimal characters.")
    return value.strip().lower()


def sop_uid(value: object) -> str:
    if not isinstance(value, str) or len(value) > 64 or not _UID.match(value):
        raise InvalidInputError(
            "a SOP instance UID must be dotted digits of at most 64 characters (DICOM PS3.5 9.1)."
        )
    return value


def canonical_json(payload: Any) -> bytes:
    """The one byte form that hashes and signatures are computed over."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

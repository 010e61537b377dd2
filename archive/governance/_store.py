"""Shared plumbing of the governance room: schema, transactions, times, ids, hashes.

All times are explicit, timezone-aware datetimes passed by the caller (so tests control
the clock) and are stored as UTC ISO-8601 strings, which sort chronologically.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence, Set
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, insert, inspect, literal, literal_column, select, update

from archive.db import Step, add_columns, create_tables, migrate
from archive.governance import tables
from archive.governance.errors import InvalidInputError

ROOM = "governance"


# Issue 21: people act for themselves. Each Board member's vote is their own row, cast
# from their own authenticated session; (decision, member) is unique. The approvers
# that whoever recorded a decision typed in before are kept as the minutes had them,
# marked not self-cast, and no longer count: a decision they carried needs its members'
# own votes again before anything acts on it (fail closed), and a proposal approved
# that way and not yet shared goes back to "proposed" until they have voted.
def _votes_named_by_others_no_longer_count(conn: Any) -> None:
    votes, decisions = tables.board_votes, tables.board_decisions
    named = select(
        votes.c.decision_id,
        votes.c.member,
        func.lower(func.trim(votes.c.member)),
        votes.c.counted,
        literal(0),
        literal("named by ") + decisions.c.recorded_by + literal(", not self-cast: does not count"),
        decisions.c.recorded_at,
    ).join_from(votes, decisions, decisions.c.id == votes.c.decision_id)
    columns = ["decision_id", "member", "member_key", "counted", "self_cast", "note", "cast_at"]
    conn.execute(insert(tables.board_member_votes).from_select(columns, named))
    conn.execute(update(decisions).values(quorum_counted=0))
    conn.execute(
        update(tables.share_proposals)
        .where(tables.share_proposals.c.status == "approved")
        .values(status="proposed")
    )


def _case_order(conn: Any) -> None:
    """Step 3 (issue 27): the cases of a removal request, share proposal and withdrawal
    keep the order given in a `position` column, backfilled from the rowid that held
    it (SQLite's own; on PostgreSQL the hidden one the SQL translator, gone since
    issue 27, added to the homes it created). On a newer home the declared tables
    already have `position` and the step changes nothing."""
    for table in (tables.removal_cases, tables.share_proposal_cases, tables.withdrawn_cases):
        present = {c["name"] for c in inspect(conn._sa).get_columns(table.name)}
        if "position" in present:
            continue
        add_columns(table, ["position"])(conn)
        conn.execute(update(table).values(position=literal_column("rowid")))


# Homes made before issue 27 ran steps 1 and 2 as SQL scripts that made the same
# tables (tables.py); step 3 is written to be right after either.
SCHEMA_STEPS: list[Step] = [
    create_tables(tables.metadata, tables.STEP_1_TABLES),
    (
        create_tables(tables.metadata, [tables.board_member_votes]),
        _votes_named_by_others_no_longer_count,
    ),
    _case_order,
]


def ensure_schema(conn: Any) -> None:
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

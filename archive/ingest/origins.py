"""How each de-identified study arrived, for the catalogue's intake kind.

Orthanc records every instance the DICOM front forwards as a REST upload (its metadata
"Origin" is RestApi), so the received-instance callback notes here, by de-identified
study UID only, the studies that came by C-STORE; catalogue_sync reads it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, MetaData, Table, Text, select

from archive import db

metadata = MetaData()
origins = Table(
    "ingest_origins",
    metadata,
    Column("study_uid", Text, primary_key=True),
    Column("intake", Text, nullable=False),
    Column("recorded_at", Text, nullable=False),
)
# Homes made before issue 27 ran step 1 as the equivalent SQL script.
SCHEMA = [db.create_tables(metadata, [origins])]
_known: set[str] = set()  # study UIDs whose row this process saw committed (skip the write)


def ensure_schema(conn: Any) -> None:
    db.migrate(conn, "ingest_origins", SCHEMA)


def record(conn: Any, study_uid: str, intake: str) -> None:
    """Note the study's intake; inside the caller's transaction when there is one (the
    ingest callback's records: no commit of its own). `remember` once it is committed."""
    if study_uid in _known:
        return
    ensure_schema(conn)
    conn.execute(
        db.dialect_insert(conn, origins)
        .values(
            study_uid=study_uid,
            intake=intake,
            recorded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        .on_conflict_do_nothing()
    )
    if not getattr(conn, "in_transaction", False):
        _known.add(study_uid)


def remember(study_uid: str) -> None:
    """The study's row is committed: later instances of it skip the write."""
    _known.add(study_uid)


def intake_of(conn: Any, study_uid: str) -> str | None:
    ensure_schema(conn)
    return conn.execute(select(origins.c.intake).where(origins.c.study_uid == study_uid)).scalar()

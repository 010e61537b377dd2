"""Reading Orthanc's SQLite index (database schema v6, Orthanc 1.10) without Orthanc.

Orthanc opens its index in exclusive locking mode, so no other process can read it
while Orthanc runs (measured: "database is locked"). Backups and fsck therefore work on
a stopped archive; they hold the home's serve lock meanwhile so no Orthanc starts.
The copy uses SQLite's online backup API, which also replays a WAL left by a crash.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archive.errors import ArchiveError

INDEX_FILENAME = "index"  # Orthanc's name for its SQLite file in IndexDirectory
PATIENT, STUDY, SERIES, INSTANCE = 1, 2, 3, 4
DICOM_CONTENT = 1


@dataclass(frozen=True)
class Attachment:
    uuid: str
    content_type: int
    resource: str  # public id of the instance (or other resource) it belongs to
    size: int
    md5: str  # MD5 of the plaintext Orthanc handed to the storage area


def index_file(index_dir: Path) -> Path:
    return Path(index_dir) / INDEX_FILENAME


def copy_index(index_dir: Path, dest: Path | str) -> sqlite3.Connection:
    """A consistent copy of the index (file path or ':memory:'), returned open."""
    source = index_file(index_dir)
    if not source.is_file():
        raise ArchiveError(f"No Orthanc index at {source}; is this an archive home that served?")
    src = sqlite3.connect(str(source), timeout=1.0)
    try:
        dst = sqlite3.connect(str(dest))
        try:
            src.backup(dst)
        except sqlite3.OperationalError as exc:
            dst.close()
            raise ArchiveError(
                f"Orthanc's index {source} cannot be read ({exc}); stop `archive serve` on "
                f"this home first (Orthanc holds its index exclusively)."
            ) from None
    finally:
        src.close()
    return dst


def attachments(conn: sqlite3.Connection) -> list[Attachment]:
    rows = conn.execute(
        "SELECT a.uuid, a.fileType, r.publicId, a.uncompressedSize, a.uncompressedMD5"
        " FROM AttachedFiles a JOIN Resources r ON r.internalId = a.id ORDER BY a.uuid"
    )
    return [Attachment(str(u), int(t), str(p), int(s or 0), str(m or "")) for u, t, p, s, m in rows]


def instances_per_study(conn: sqlite3.Connection) -> dict[str, int]:
    """Orthanc study public id -> number of instances under it."""
    rows = conn.execute(
        "SELECT st.publicId, COUNT(i.internalId) FROM Resources st"
        " LEFT JOIN Resources se ON se.parentId = st.internalId AND se.resourceType = ?"
        " LEFT JOIN Resources i ON i.parentId = se.internalId AND i.resourceType = ?"
        " WHERE st.resourceType = ? GROUP BY st.publicId",
        (SERIES, INSTANCE, STUDY),
    )
    return {str(p): int(n) for p, n in rows}


def instances_without_file(conn: sqlite3.Connection) -> list[str]:
    """Instances that have no DICOM attachment row at all (should never happen)."""
    rows = conn.execute(
        "SELECT r.publicId FROM Resources r WHERE r.resourceType = ? AND NOT EXISTS"
        " (SELECT 1 FROM AttachedFiles a WHERE a.id = r.internalId AND a.fileType = ?)",
        (INSTANCE, DICOM_CONTENT),
    )
    return [str(r[0]) for r in rows]


class PgIndex:
    """Orthanc's index in PostgreSQL (orthanc-postgresql 4.0, schema public), read with
    the same questions as a SQLite copy (archive/backup/orthanc_index.py). Resource types
    there are the plugin SDK's: patient 0, study 1, series 2, instance 3."""

    STUDY, SERIES, INSTANCE = 1, 2, 3

    def __init__(self, config: Any) -> None:
        from archive import db  # noqa: PLC0415

        self.conn = db.open_database(config)

    def _rows(self, sql: str, **params: Any) -> list[Any]:
        from sqlalchemy import text  # noqa: PLC0415

        return self.conn.execute(text(sql), params or None).fetchall()

    def present(self) -> bool:
        rows = self._rows("SELECT to_regclass('public.attachedfiles') IS NOT NULL")
        return bool(rows and rows[0][0])

    def attachments(self) -> list[Attachment]:
        rows = self._rows(
            "SELECT a.uuid, a.filetype, r.publicid, a.uncompressedsize, a.uncompressedhash"
            " FROM public.attachedfiles a JOIN public.resources r ON r.internalid = a.id"
            " ORDER BY a.uuid"
        )
        return [
            Attachment(str(u), int(t), str(p), int(n or 0), str(m or "")) for u, t, p, n, m in rows
        ]

    def instances_per_study(self) -> dict[str, int]:
        rows = self._rows(
            "SELECT st.publicid, COUNT(i.internalid) FROM public.resources st"
            " LEFT JOIN public.resources se ON se.parentid = st.internalid"
            " AND se.resourcetype = :series"
            " LEFT JOIN public.resources i ON i.parentid = se.internalid"
            " AND i.resourcetype = :instance"
            " WHERE st.resourcetype = :study GROUP BY st.publicid",
            series=self.SERIES,
            instance=self.INSTANCE,
            study=self.STUDY,
        )
        return {str(p): int(n) for p, n in rows}

    def instances_without_file(self) -> list[str]:
        rows = self._rows(
            "SELECT r.publicid FROM public.resources r WHERE r.resourcetype = :instance AND"
            " NOT EXISTS (SELECT 1 FROM public.attachedfiles a WHERE a.id = r.internalid"
            " AND a.filetype = :dicom)",
            instance=self.INSTANCE,
            dicom=DICOM_CONTENT,
        )
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        self.conn.close()

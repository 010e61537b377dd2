"""The instance ledger: which stored DICOM file is which instance, owned by the vault room.

One row per DICOM file (attachment content type 1) in the encrypted store, written by
the storage area when Orthanc stores the file and deleted when Orthanc removes it. It
lets the archive find, read and send a study's files from the vault itself, without
asking Orthanc (a Python callback that calls orthanc.RestApi* holds Python's lock while
Orthanc works, and Orthanc's threads waiting on the Python storage area then deadlock:
see ../shared/design/ARCHITECTURE.md and ops/NO-RESTAPI.md).

Orthanc's public ids are deterministic (Orthanc's DicomInstanceHasher): the SHA-1 of
"PatientID|StudyInstanceUID[|SeriesInstanceUID[|SOPInstanceUID]]", as 40 hex digits in
five groups of eight joined by "-" (`orthanc_id`). tests/integration/test_ledger.py checks
them against a real Orthanc.

Only the header is parsed (pydicom, stop before pixels, a few tags), so recording costs
little beside the encryption. The ledger holds no identifying data: the UIDs and the
(pseudonymous) patient id were replaced on ingest, and the patient id is not kept.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from archive.db import dialect, migrate

ROOM = "vault_ledger"
DICOM_CONTENT_TYPE = 1
STEPS = [
    """
    CREATE TABLE vault_instances (
      uuid TEXT PRIMARY KEY,
      orthanc_instance_id TEXT NOT NULL,
      orthanc_series_id TEXT NOT NULL,
      orthanc_study_id TEXT NOT NULL,
      study_uid TEXT NOT NULL,
      series_uid TEXT NOT NULL,
      sop_uid TEXT NOT NULL,
      sop_class_uid TEXT NOT NULL,
      transfer_syntax TEXT NOT NULL,
      modality TEXT NOT NULL,
      instance_number INTEGER,
      size INTEGER NOT NULL
    );
    CREATE INDEX vault_instances_study ON vault_instances (orthanc_study_id);
    CREATE INDEX vault_instances_series ON vault_instances (orthanc_series_id);
    CREATE INDEX vault_instances_study_uid ON vault_instances (study_uid);
    CREATE INDEX vault_instances_instance ON vault_instances (orthanc_instance_id);
    """
]

_COLUMNS = (
    "uuid, orthanc_instance_id, orthanc_series_id, orthanc_study_id, study_uid, series_uid,"
    " sop_uid, sop_class_uid, transfer_syntax, modality, instance_number, size"
)
# The tags the header parse reads (pydicom reads the file meta group anyway).
_TAGS = (
    0x00100020,  # PatientID
    0x0020000D,  # StudyInstanceUID
    0x0020000E,  # SeriesInstanceUID
    0x00080018,  # SOPInstanceUID
    0x00080016,  # SOPClassUID
    0x00080060,  # Modality
    0x00200013,  # InstanceNumber
)


class LedgerError(ValueError):
    """A stored file whose header the ledger cannot read (not DICOM, or no UIDs)."""


@dataclass(frozen=True)
class LedgerEntry:
    uuid: str
    orthanc_instance_id: str
    orthanc_series_id: str
    orthanc_study_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    modality: str
    instance_number: int | None
    size: int


def orthanc_id(*parts: str) -> str:
    """Orthanc's public id of the resource named by these values (see the module doc)."""
    digest = hashlib.sha1("|".join(parts).encode("utf-8"), usedforsecurity=False).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if not isinstance(value, str):
        value = str(value)
    # Orthanc strips leading and trailing spaces (and UI padding) before hashing.
    return value.replace("\x00", "").strip()


def _entry_from_raw(uuid: str, data: bytes | bytearray | memoryview) -> LedgerEntry | None:
    """The ledger row from the raw elements of the few tags it needs (no pydicom parse;
    issue 26: the storage area runs this for every stored instance); None when only
    pydicom can say (not ASCII, multi-valued, not for the raw reader)."""
    from archive.deid.raw import peek

    try:
        found = peek(data, _TAGS + (0x00020002, 0x00020010))
        values = {}
        for tag, value in found.items():
            if b"\\" in value:
                return None
            values[tag] = value.decode("ascii").replace("\x00", "").strip()
        number_text = values.get(0x00200013, "")
        number = int(number_text) if number_text else None
    except Exception:  # noqa: BLE001 - Unsupported, not ASCII, not an integer: pydicom reads it
        return None
    patient = values.get(0x00100020, "")
    study, series, sop = (values.get(t, "") for t in (0x0020000D, 0x0020000E, 0x00080018))
    if not (study and series and sop):
        return None  # pydicom's reading says what is wrong
    return LedgerEntry(
        uuid=uuid,
        orthanc_instance_id=orthanc_id(patient, study, series, sop),
        orthanc_series_id=orthanc_id(patient, study, series),
        orthanc_study_id=orthanc_id(patient, study),
        study_uid=study,
        series_uid=series,
        sop_uid=sop,
        sop_class_uid=values.get(0x00080016) or values.get(0x00020002, ""),
        transfer_syntax=values.get(0x00020010) or "1.2.840.10008.1.2",
        modality=values.get(0x00080060, ""),
        instance_number=number,
        size=len(data),
    )


def entry_from_dicom(uuid: str, data: bytes | bytearray | memoryview) -> LedgerEntry:
    """Parse a DICOM file's header into its ledger row; LedgerError if it cannot."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    fast = _entry_from_raw(uuid, data)
    if fast is not None:
        return fast
    raw = bytes(data)
    try:
        ds = pydicom.dcmread(
            io.BytesIO(raw), stop_before_pixels=True, specific_tags=list(_TAGS), force=False
        )
    except (InvalidDicomError, EOFError, ValueError, TypeError, OSError) as exc:
        raise LedgerError(f"attachment {uuid} is not a readable DICOM file") from exc
    meta = getattr(ds, "file_meta", None)
    patient = _text(ds, "PatientID")
    study, series, sop = (_text(ds, k) for k in ("StudyInstanceUID", "SeriesInstanceUID",
                                                 "SOPInstanceUID"))  # fmt: skip
    if not (study and series and sop):
        raise LedgerError(f"attachment {uuid} lacks a study, series or SOP instance UID")
    sop_class = _text(ds, "SOPClassUID") or _text(meta, "MediaStorageSOPClassUID")
    syntax = _text(meta, "TransferSyntaxUID") if meta is not None else ""
    number: int | None
    try:
        raw_number = ds.get("InstanceNumber")
        number = int(raw_number) if raw_number not in (None, "") else None
    except (TypeError, ValueError):
        number = None
    return LedgerEntry(
        uuid=uuid,
        orthanc_instance_id=orthanc_id(patient, study, series, sop),
        orthanc_series_id=orthanc_id(patient, study, series),
        orthanc_study_id=orthanc_id(patient, study),
        study_uid=study,
        series_uid=series,
        sop_uid=sop,
        sop_class_uid=sop_class,
        transfer_syntax=syntax or "1.2.840.10008.1.2",
        modality=_text(ds, "Modality"),
        instance_number=number,
        size=len(raw),
    )


def _entry(row) -> LedgerEntry:
    return LedgerEntry(
        uuid=row[0],
        orthanc_instance_id=row[1],
        orthanc_series_id=row[2],
        orthanc_study_id=row[3],
        study_uid=row[4],
        series_uid=row[5],
        sop_uid=row[6],
        sop_class_uid=row[7],
        transfer_syntax=row[8],
        modality=row[9],
        instance_number=None if row[10] is None else int(row[10]),
        size=int(row[11]),
    )


def _ordered(rows: Iterable) -> list[LedgerEntry]:
    """By series, then instance number (none last), then SOP UID; one entry per instance
    (a file written for an instance already stored is removed by Orthanc a moment later)."""
    seen: dict[str, LedgerEntry] = {}
    for row in rows:
        entry = _entry(row)
        seen.setdefault(entry.orthanc_instance_id, entry)
    return sorted(
        seen.values(),
        key=lambda e: (
            e.series_uid,
            e.instance_number is None,
            e.instance_number if e.instance_number is not None else 0,
            e.sop_uid,
        ),
    )


class InstanceLedger:
    """The vault_instances table on one connection (SQLite or PostgreSQL)."""

    def __init__(self, conn) -> None:
        self.conn = conn
        migrate(conn, ROOM, STEPS)

    # -- writing (the storage area) -----------------------------------------------------
    def record(self, entry: LedgerEntry, *, durable: bool = True) -> None:
        """`durable=False` (the storage area, issue 26): on SQLite the row is committed
        without its own fsync of the WAL (synchronous=NORMAL for this statement only); it
        becomes durable with the next synchronous commit of archive.db. A power cut before
        that can lose the row, never the stored file: `backfill` records it at the next
        start. A process crash loses nothing (the WAL is in the page cache)."""
        grouped = not durable and dialect(self.conn) == "sqlite" and not self.conn.in_transaction
        if grouped:
            (level,) = self.conn.execute("PRAGMA synchronous").fetchone()
            grouped = level > 1  # FULL or EXTRA: relax to NORMAL for this insert only
        if grouped:
            self.conn.execute("PRAGMA synchronous=NORMAL")
        try:
            self.conn.execute(
                f"INSERT OR IGNORE INTO vault_instances ({_COLUMNS})"  # noqa: S608 - constant
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.uuid, entry.orthanc_instance_id, entry.orthanc_series_id,
                    entry.orthanc_study_id, entry.study_uid, entry.series_uid, entry.sop_uid,
                    entry.sop_class_uid, entry.transfer_syntax, entry.modality,
                    entry.instance_number, entry.size,
                ),
            )  # fmt: skip
        finally:
            if grouped:
                self.conn.execute(f"PRAGMA synchronous={int(level)}")

    def record_file(self, uuid: str, data: bytes | bytearray | memoryview) -> LedgerEntry:
        entry = entry_from_dicom(uuid, data)
        self.record(entry)
        return entry

    def forget(self, uuid: str) -> None:
        self.conn.execute("DELETE FROM vault_instances WHERE uuid = ?", (uuid,))

    def uuids(self) -> set[str]:
        return {row[0] for row in self.conn.execute("SELECT uuid FROM vault_instances")}

    # -- reading --------------------------------------------------------------------------
    def _select(self, where: str, value: str) -> list[LedgerEntry]:
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM vault_instances WHERE {where} = ?",  # noqa: S608
            (value,),
        ).fetchall()
        return _ordered(rows)

    def study_files(self, orthanc_study_id: str) -> list[LedgerEntry]:
        """Every instance of an Orthanc study, by series then instance number."""
        return self._select("orthanc_study_id", orthanc_study_id)

    def series_files(self, orthanc_series_id: str) -> list[LedgerEntry]:
        return self._select("orthanc_series_id", orthanc_series_id)

    def by_study_uid(self, study_uid: str) -> list[LedgerEntry]:
        return self._select("study_uid", study_uid)

    def instance(self, orthanc_instance_id: str) -> LedgerEntry | None:
        found = self._select("orthanc_instance_id", orthanc_instance_id)
        return found[0] if found else None

    def counts(self) -> dict:
        """{"studies": n, "series": n, "instances": n} of what the vault holds."""
        row = self.conn.execute(
            "SELECT COUNT(DISTINCT orthanc_study_id), COUNT(DISTINCT orthanc_series_id),"
            " COUNT(DISTINCT orthanc_instance_id) FROM vault_instances"
        ).fetchone()
        return {"studies": int(row[0]), "series": int(row[1]), "instances": int(row[2])}

    def total_size(self) -> int:
        """Bytes of the stored DICOM files (clear size, before encryption)."""
        row = self.conn.execute("SELECT COALESCE(SUM(size), 0) FROM vault_instances").fetchone()
        return int(row[0])


def read_dicom(store, entry: LedgerEntry) -> bytes:
    """The decrypted DICOM file of a ledger entry, from the EncryptedStore."""
    return store.read(entry.uuid, DICOM_CONTENT_TYPE)


@dataclass
class BackfillReport:
    recorded: int = 0
    forgotten: int = 0
    unreadable: list[str] | None = None


def backfill(
    ledger: InstanceLedger,
    store,
    *,
    progress: Callable[[int, int], None] | None = None,
    every: int = 500,
) -> BackfillReport:
    """Record every stored DICOM file without a row (archives made before the ledger) and
    forget rows whose file is gone. `progress(done, total)` is called every `every` files.

    A file that cannot be decrypted or parsed is listed in `unreadable` (uuid only) and
    left for `archive fsck`; it is never fatal here."""
    report = BackfillReport(unreadable=[])
    known = ledger.uuids()
    on_disk: set[str] = set()
    missing: list[str] = []
    for uuid, content_type, _path in store.entries():
        if content_type != DICOM_CONTENT_TYPE:
            continue
        on_disk.add(uuid)
        if uuid not in known:
            missing.append(uuid)
    for uuid in known - on_disk:
        ledger.forget(uuid)
        report.forgotten += 1
    total = len(missing)
    for done, uuid in enumerate(missing, start=1):
        try:
            ledger.record_file(uuid, store.read(uuid, DICOM_CONTENT_TYPE))
            report.recorded += 1
        except Exception:  # noqa: BLE001 - tamper, unreadable: fsck's business, not fatal
            report.unreadable.append(uuid)
        if progress is not None and (done % every == 0 or done == total):
            progress(done, total)
    return report

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

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    delete,
    func,
    select,
)

from archive.db import create_tables, migrate, prepared

ROOM = "vault_ledger"
DICOM_CONTENT_TYPE = 1
Int = BigInteger().with_variant(Integer(), "sqlite")
metadata = MetaData()
instances = Table(
    "vault_instances",
    metadata,
    Column("uuid", Text, primary_key=True),
    *(
        Column(name, Text, nullable=False)
        for name in (
            "orthanc_instance_id",
            "orthanc_series_id",
            "orthanc_study_id",
            "study_uid",
            "series_uid",
            "sop_uid",
            "sop_class_uid",
            "transfer_syntax",
            "modality",
        )
    ),
    Column("instance_number", Int),
    Column("size", Int, nullable=False),
)
Index("vault_instances_study", instances.c.orthanc_study_id)
Index("vault_instances_series", instances.c.orthanc_series_id)
Index("vault_instances_study_uid", instances.c.study_uid)
Index("vault_instances_instance", instances.c.orthanc_instance_id)
# Homes made before issue 27 ran step 1 as the equivalent SQL script.
STEPS = [create_tables(metadata, [instances])]
_COLUMNS = tuple(instances.columns)  # LedgerEntry's order (_entry reads by position)


def _record(insert_for: Any) -> Any:
    """One file's row, once (the same file recorded again inserts nothing)."""
    return insert_for(instances).on_conflict_do_nothing()


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
    def record(self, entry: LedgerEntry) -> None:
        self.conn.execute(
            prepared(self.conn, _record),
            {
                "uuid": entry.uuid, "orthanc_instance_id": entry.orthanc_instance_id,
                "orthanc_series_id": entry.orthanc_series_id,
                "orthanc_study_id": entry.orthanc_study_id, "study_uid": entry.study_uid,
                "series_uid": entry.series_uid, "sop_uid": entry.sop_uid,
                "sop_class_uid": entry.sop_class_uid, "transfer_syntax": entry.transfer_syntax,
                "modality": entry.modality, "instance_number": entry.instance_number,
                "size": entry.size,
            },
        )  # fmt: skip

    def record_file(self, uuid: str, data: bytes | bytearray | memoryview) -> LedgerEntry:
        entry = entry_from_dicom(uuid, data)
        self.record(entry)
        return entry

    def forget(self, uuid: str) -> None:
        self.conn.execute(delete(instances).where(instances.c.uuid == uuid))

    def uuids(self) -> set[str]:
        return set(self.conn.execute(select(instances.c.uuid)).scalars())

    # -- reading --------------------------------------------------------------------------
    def _select(self, where: str, value: str) -> list[LedgerEntry]:
        rows = self.conn.execute(select(*_COLUMNS).where(instances.c[where] == value)).fetchall()
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
        c = instances.c
        row = self.conn.execute(
            select(
                func.count(c.orthanc_study_id.distinct()),
                func.count(c.orthanc_series_id.distinct()),
                func.count(c.orthanc_instance_id.distinct()),
            )
        ).fetchone()
        return {"studies": int(row[0]), "series": int(row[1]), "instances": int(row[2])}

    def total_size(self) -> int:
        """Bytes of the stored DICOM files (clear size, before encryption)."""
        total = self.conn.execute(select(func.coalesce(func.sum(instances.c.size), 0))).scalar()
        return int(total)


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

"""The instance ledger: header parse, Orthanc's ids, ordering, counts, backfill, reading."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from archive.db import connect
from archive.vault import EncryptedStore, KdfParams, Keyring
from archive.vault.ledger import (
    InstanceLedger,
    LedgerError,
    backfill,
    entry_from_dicom,
    orthanc_id,
    read_dicom,
)
from tests.corpus import make_ct_series, make_sr_instance, to_bytes

FAST = KdfParams(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def conn(tmp_path: Path):
    c = connect(tmp_path / "archive.db")
    yield c
    c.close()


@pytest.fixture
def store(tmp_path: Path) -> EncryptedStore:
    ring = Keyring.create(tmp_path / "keys" / "keyring.json", "correct horse battery", kdf=FAST)
    return EncryptedStore(tmp_path / "data" / "storage", ring)


def test_orthanc_id_format() -> None:
    digest = hashlib.sha1(b"P1|1.2.3", usedforsecurity=False).hexdigest()
    assert orthanc_id("P1", "1.2.3") == "-".join(digest[i : i + 8] for i in range(0, 40, 8))
    assert len(orthanc_id("x")) == 44


def test_entry_from_dicom_reads_the_header() -> None:
    ds = make_ct_series(1, patient_id="ANON1")[0]
    ds.InstanceNumber = 7
    data = to_bytes(ds)
    entry = entry_from_dicom("u-0001", data)
    assert entry.sop_uid == ds.SOPInstanceUID
    assert entry.series_uid == ds.SeriesInstanceUID
    assert entry.study_uid == ds.StudyInstanceUID
    assert entry.sop_class_uid == ds.SOPClassUID
    assert entry.transfer_syntax == "1.2.840.10008.1.2.1"
    assert entry.modality == "CT"
    assert entry.instance_number == 7
    assert entry.size == len(data)
    study = ds.StudyInstanceUID
    assert entry.orthanc_study_id == orthanc_id("ANON1", study)
    assert entry.orthanc_series_id == orthanc_id("ANON1", study, ds.SeriesInstanceUID)
    assert entry.orthanc_instance_id == orthanc_id(
        "ANON1", study, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )


def test_entry_without_uids_or_not_dicom_is_refused() -> None:
    with pytest.raises(LedgerError):
        entry_from_dicom("u-0002", b"not dicom at all" * 20)
    ds = make_ct_series(1)[0]
    del ds.SeriesInstanceUID
    with pytest.raises(LedgerError):
        entry_from_dicom("u-0003", to_bytes(ds))


def test_study_files_ordered_and_counts(conn) -> None:
    ledger = InstanceLedger(conn)
    first = make_ct_series(3, patient_id="A", series_number=1)
    study = first[0].StudyInstanceUID
    second = make_ct_series(2, patient_id="A", study_uid=study, series_number=2)
    sr = make_sr_instance(patient_id="A")
    sr.StudyInstanceUID = study
    datasets = [*reversed(first), *second]
    for i, ds in enumerate(datasets):
        ledger.record_file(f"uuid-{i:04d}", to_bytes(ds))
    ledger.record_file("uuid-sr00", to_bytes(sr))
    study_id = orthanc_id("A", study)
    files = ledger.study_files(study_id)
    assert len(files) == 6
    by_series = {}
    for entry in files:
        by_series.setdefault(entry.series_uid, []).append(entry.instance_number)
    assert by_series[first[0].SeriesInstanceUID] == [1, 2, 3]
    assert ledger.by_study_uid(study) == files
    series_files = ledger.series_files(files[0].orthanc_series_id)
    assert all(e.series_uid == files[0].series_uid for e in series_files)
    assert ledger.counts() == {"studies": 1, "series": 3, "instances": 6}
    # The same instance written again (Orthanc removes the second file): listed once.
    ledger.record_file("uuid-dupl", to_bytes(first[0]))
    assert len(ledger.study_files(study_id)) == 6
    ledger.forget("uuid-dupl")
    ledger.forget("uuid-0000")
    assert ledger.counts()["instances"] == 5
    assert ledger.study_files("no-such-study") == []


def test_backfill_records_old_files_and_forgets_stale_rows(conn, store) -> None:
    datasets = make_ct_series(4, patient_id="B")
    for i, ds in enumerate(datasets):
        data = to_bytes(ds)
        store.write(f"file-{i:04d}", 1, data)
        store.write(f"file-{i:04d}", 3, data[:300])  # other content types are not rows
    store.write("file-junk", 1, b"garbage that is not DICOM")
    ledger = InstanceLedger(conn)
    ledger.record_file("file-gone", to_bytes(make_ct_series(1, patient_id="C")[0]))
    seen = []
    report = backfill(ledger, store, progress=lambda d, t: seen.append((d, t)), every=2)
    assert report.recorded == 4
    assert report.forgotten == 1
    assert report.unreadable == ["file-junk"]
    assert seen[-1] == (5, 5)
    assert ledger.counts() == {"studies": 1, "series": 1, "instances": 4}
    # Idempotent: a second start finds nothing to do but the unreadable file.
    again = backfill(ledger, store)
    assert again.recorded == 0 and again.forgotten == 0
    entry = ledger.study_files(orthanc_id("B", datasets[0].StudyInstanceUID))[0]
    assert read_dicom(store, entry) == to_bytes(datasets[0])

"""Intake domain: completeness, backoff, answer classification, journal resume,
containers, sealed rejects, links and special files, keyed fingerprints, and the engine
end to end with a scripted archive."""

from __future__ import annotations

import hashlib
import os
import random
import zipfile
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.fileset import FileSet

from archive.config import load_config
from archive.intake import (
    Backoff,
    CompletenessTracker,
    DropRoot,
    Fingerprints,
    Intake,
    IntakeSettings,
    Journal,
    NotRegular,
    OutsideRoot,
    RejectStore,
    UploadResult,
    Verdict,
    dicomdir_references,
    extract_zip,
    is_dicomdir,
    private_workdir,
)
from archive.intake.journal import path_key
from archive.intake.uploader import classify
from archive.serve.home import init_home
from archive.vault import Keyring
from archive.vault.keyring import keyring_path
from archive.vault.sealing import KdfParams
from tests.corpus import make_ct_series, to_bytes

FAST_KDF = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)


def test_tracker_waits_for_stable_size_and_settles_after_close(tmp_path: Path) -> None:
    f = tmp_path / "a.dcm"
    f.write_bytes(b"x" * 10)
    t = CompletenessTracker(stable_seconds=2.0, settle_seconds=0.2)
    t.seen(f, 0.0)
    assert t.ready(1.0) == []
    with open(f, "ab") as h:
        h.write(b"more")
    os.utime(f, ns=(1, 123456789))
    assert t.ready(1.5) == []  # changed: the clock restarts
    assert t.ready(3.0) == []
    assert t.ready(3.6) == [f]
    g = tmp_path / "b.dcm"
    g.write_bytes(b"y")
    t.seen(g, 10.0, closed=True)
    assert t.ready(10.1) == [] and t.ready(10.3) == [g]
    h = tmp_path / "gone.dcm"
    h.write_bytes(b"z")
    t.seen(h, 0.0)
    h.unlink()
    assert t.ready(100.0) == [] and len(t) == 0


def test_backoff_grows_to_a_ceiling() -> None:
    b = Backoff(initial=1, factor=2, ceiling=10, jitter=0)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5, 9)] == [1, 2, 4, 8, 10, 10]
    jittered = Backoff(initial=4, jitter=0.25)
    values = {jittered.delay(1, random.Random(s)) for s in range(20)}
    assert all(3 <= v <= 5 for v in values) and len(values) > 1


def test_classify_orthanc_answers() -> None:
    assert classify(200, {"Status": "Success"}).verdict is Verdict.STORED
    assert classify(200, {"Status": "AlreadyStored"}).verdict is Verdict.ALREADY
    assert classify(200, {"Status": "FilteredOut"}).verdict is Verdict.HELD
    assert classify(200, {}).verdict is Verdict.RETRY  # unknown: keep the file
    assert classify(400, {"OrthancStatus": 15}).verdict is Verdict.REJECTED
    assert classify(404, {"OrthancStatus": 21}).verdict is Verdict.REJECTED
    assert classify(404, None).verdict is Verdict.RETRY
    assert classify(401, None).verdict is Verdict.AUTH
    for code in (500, 503, 507):
        assert classify(code, None).verdict is Verdict.RETRY


def test_journal_resumes_and_dedups(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    j = Journal.open(db)
    e = j.record(path_key("/drop/x"), 10, 5, "ab" * 32)
    assert j.record(path_key("/drop/x"), 10, 5, "ab" * 32).id == e.id
    assert j.confirmed("ab" * 32) is None
    j.confirm(e.id, "ab" * 32, "stored")
    j.close()
    j = Journal.open(db)  # after a crash: the confirmation survived
    assert j.confirmed("ab" * 32) == "stored"
    assert j.get(e.id).state == "confirmed"
    assert "/drop/x" not in (tmp_path / "a.db").read_bytes().decode("latin-1")


def test_zip_extracted_flat_into_private_dir(tmp_path: Path) -> None:
    z = tmp_path / "t.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../../evil/DOE_JANE.dcm", b"one")
        zf.writestr("dir/", b"")
        inner = tmp_path / "inner.zip"
        with zipfile.ZipFile(inner, "w") as zi:
            zi.writestr("b", b"two")
        zf.write(inner, "inner.zip")
    work = private_workdir(tmp_path / "data")
    assert (work.stat().st_mode & 0o777) == 0o700 and (tmp_path / "data") in work.parents
    members = extract_zip(z, work)
    assert sorted(m.read_bytes() for m in members) == [b"one", b"two"]
    assert all(work in m.parents and "DOE" not in str(m) for m in members)


def test_dicomdir_references(tmp_path: Path) -> None:
    fs = FileSet()
    for i, ds in enumerate(make_ct_series(2)):
        p = tmp_path / f"{i}.dcm"
        p.write_bytes(to_bytes(ds))
        fs.add(dcmread(p))
    fs.write(tmp_path / "media")
    dicomdir = tmp_path / "media" / "DICOMDIR"
    assert is_dicomdir(dicomdir) and not is_dicomdir(tmp_path / "0.dcm")
    refs = dicomdir_references(dicomdir)
    assert len(refs) == 2 and all((tmp_path / "media") in r.parents for r in refs)


def _keyring(home: Path) -> Keyring:
    path = keyring_path(home / "keys")
    if path.exists():
        return Keyring.open(path, "test passphrase for intake")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Keyring.create(path, "test passphrase for intake", kdf=FAST_KDF)


def _grep(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


class ScriptedArchive:
    """Answers uploads from a script; remembers what it 'stored' (by bytes)."""

    def __init__(self, script: list[Verdict] | None = None) -> None:
        self.script = list(script or [])
        self.stored: list[bytes] = []

    def upload(self, data: bytes) -> UploadResult:
        verdict = self.script.pop(0) if self.script else Verdict.STORED
        if verdict is Verdict.STORED and data in self.stored:
            verdict = Verdict.ALREADY
        if verdict is Verdict.STORED:
            self.stored.append(data)
        return UploadResult(verdict, verdict.value, 200)

    def close(self) -> None:
        pass


def _intake(tmp_path: Path, archive: ScriptedArchive, drop: Path, **kwargs) -> Intake:
    home = tmp_path / "home"
    if (home / "archive.toml").exists():
        config = load_config(home)
    else:
        config = init_home(home, http_port=18042, dicom_port=18043)
    settings = IntakeSettings(
        stable_seconds=0.0,
        settle_seconds=0.0,
        workers=2,
        backoff=Backoff(initial=0.01, ceiling=0.02),
        once_attempts=2,
    )
    return Intake(config, drop, settings, archive, keyring=_keyring(home), **kwargs)  # type: ignore[arg-type]


def test_engine_stores_rejects_keeps_and_dedups(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "n").mkdir(parents=True)
    data = [to_bytes(ds) for ds in make_ct_series(3)]
    (drop / "n" / "a.dcm").write_bytes(data[0])
    (drop / "b.dcm").write_bytes(data[1])
    (drop / "b.dcm.part").write_bytes(data[2])  # still being written under a temp name
    archive = ScriptedArchive()
    summary = _intake(tmp_path, archive, drop).run_once()
    assert summary.stored == 2 and summary.deleted == 2
    assert sorted(p.name for p in drop.rglob("*") if p.is_file()) == ["b.dcm.part"]
    # The same bytes dropped again: deleted without another upload.
    (drop / "again.dcm").write_bytes(data[0])
    summary = _intake(tmp_path, archive, drop).run_once()
    assert summary.duplicates == 1 and len(archive.stored) == 2
    assert not (drop / "again.dcm").exists()


def test_engine_keeps_file_while_archive_is_down(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "c.dcm").write_bytes(to_bytes(make_ct_series(1)[0]))
    down = ScriptedArchive([Verdict.RETRY] * 5)
    summary = _intake(tmp_path, down, drop).run_once()
    assert summary.kept == 1 and summary.retried == 2 and (drop / "c.dcm").exists()
    up = ScriptedArchive()
    summary = _intake(tmp_path, up, drop).run_once()
    assert summary.stored == 1 and not (drop / "c.dcm").exists()


def test_engine_seals_rejects_nothing_in_clear(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    planted = b"PLANTED^PATIENT^NAME ID 4711 ACC 0815 " * 20
    (drop / "SMITH_JOHN.txt").write_bytes(planted)
    intake = _intake(tmp_path, ScriptedArchive([Verdict.REJECTED]), drop)
    summary = intake.run_once()
    assert summary.rejected == 1 and not (drop / "SMITH_JOHN.txt").exists()
    home = tmp_path / "home"
    assert _grep(home, b"PLANTED^PATIENT") == [] and _grep(home, b"SMITH_JOHN") == []
    assert not [p for p in home.rglob("*SMITH*")]
    [item] = intake.rejects.list()
    assert item.reason == "rejected" and item.size == len(planted)
    assert intake.rejects.read(item.id) == (planted, "SMITH_JOHN.txt")
    intake.rejects.delete(item.id)
    assert intake.rejects.list() == [] and not any(
        p.is_file() for p in (intake.rejects_dir / "sealed").rglob("*")
    )
    intake.audit.close()


def test_clear_rejects_of_an_earlier_version_are_sealed_at_start(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    old = tmp_path / "home" / "data" / "intake" / "rejects"
    intake = _intake(tmp_path, ScriptedArchive(), drop)  # creates the home
    intake.audit.close()
    (old / "sub").mkdir(parents=True)
    (old / "sub" / "DOE_JANE.dcm").write_bytes(b"DOE^JANE clear reject")
    (old / "sub" / "DOE_JANE.dcm.reason.txt").write_text(
        "not ingested: not a DICOM file\nwhen: x\nintake journal id: 7\n"
    )
    (old / "denied.dcm.reason.txt").write_text("not ingested: permission denied\n")
    intake = _intake(tmp_path, ScriptedArchive(), drop)
    assert intake.summary.migrated == 1
    assert _grep(tmp_path / "home", b"DOE^JANE") == []
    assert not [p for p in old.rglob("*") if "DOE" in p.name or p.name.endswith(".txt")]
    [item] = intake.rejects.list()
    assert (item.reason, item.entry_id, item.origin) == ("not a DICOM file", 7, "migrated")
    assert intake.rejects.read(item.id) == (b"DOE^JANE clear reject", "sub/DOE_JANE.dcm")
    intake.audit.close()


def test_link_to_a_file_outside_is_never_read_written_or_deleted(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "precious.dcm"
    secret.write_bytes(to_bytes(make_ct_series(1)[0]))
    os.utime(secret, ns=(1_000_000_000, 2_000_000_000))
    before = (secret.read_bytes(), secret.stat().st_mtime_ns)
    (drop / "link.dcm").symlink_to(secret)
    (drop / "sub" / "dirlink").symlink_to(outside, target_is_directory=True)
    os.mkfifo(drop / "pipe.dcm")
    notices: list[str] = []
    archive = ScriptedArchive()
    intake = _intake(tmp_path, archive, drop, overwrite=True, on_notice=notices.append)
    summary = intake.run_once()
    assert (secret.read_bytes(), secret.stat().st_mtime_ns) == before
    assert archive.stored == [] and summary.stored == summary.deleted == 0
    assert summary.skipped == 3 and len(notices) == 3
    assert all("never follows links" in n and "link.dcm" not in n for n in notices)
    assert (drop / "link.dcm").is_symlink() and (drop / "pipe.dcm").exists()
    audit = (tmp_path / "home" / "data" / "audit" / "audit.jsonl").read_text()
    assert audit.count('"intake.skipped"') == 3 and "precious" not in audit
    # The same link offered by an event (a live drop) is refused at the read too.
    intake._process(drop / "link.dcm")
    assert (secret.read_bytes(), secret.stat().st_mtime_ns) == before
    intake.audit.close()


def test_drop_root_refuses_links_on_the_way_and_paths_outside(tmp_path: Path) -> None:
    drop, outside = tmp_path / "drop", tmp_path / "outside"
    (drop / "real").mkdir(parents=True)
    outside.mkdir()
    (outside / "f.dcm").write_bytes(b"outside")
    (drop / "real" / "f.dcm").write_bytes(b"inside")
    root = DropRoot(drop)
    data, st = root.read(drop / "real" / "f.dcm")
    assert data == b"inside"
    # A folder swapped for a link between the scan and the read/delete:
    (drop / "real" / "f.dcm").unlink()
    (drop / "real").rmdir()
    (drop / "real").symlink_to(outside, target_is_directory=True)
    with pytest.raises(NotRegular):
        root.read(drop / "real" / "f.dcm")
    with pytest.raises(NotRegular):
        root.remove(drop / "real" / "f.dcm", (st.st_size, st.st_mtime_ns), overwrite=True)
    for bad in (outside / "f.dcm", drop / ".." / "outside" / "f.dcm"):
        with pytest.raises(OutsideRoot):
            root.read(bad)
    assert (outside / "f.dcm").read_bytes() == b"outside"
    assert list(root.walk()) == [(drop / "real", "symbolic link")]
    root.close()


def test_dicomdir_reference_outside_the_drop_folder_is_left_out(tmp_path: Path) -> None:
    fs = FileSet()
    for i, ds in enumerate(make_ct_series(2)):
        p = tmp_path / f"{i}.dcm"
        p.write_bytes(to_bytes(ds))
        fs.add(dcmread(p))
    fs.write(tmp_path / "media")
    dicomdir = tmp_path / "media" / "DICOMDIR"
    data = dicomdir.read_bytes()
    assert len(dicomdir_references(dicomdir, data, root=tmp_path / "media")) == 2
    assert dicomdir_references(dicomdir, data, root=tmp_path / "media" / "other") == []


def test_fingerprints_are_keyed_and_old_rows_converted(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    data = [to_bytes(ds) for ds in make_ct_series(2)]
    home = tmp_path / "home"
    init_home(home, http_port=18042, dicom_port=18043)
    db = home / "data" / "archive.db"
    # A row written by an earlier version: plain SHA-256 of the bytes, confirmed.
    old = Journal.open(db)
    plain = hashlib.sha256(data[0]).hexdigest()
    entry = old.record(path_key(drop / "a.dcm"), len(data[0]), 1, plain)
    old.confirm(entry.id, plain, "stored")
    old.close()
    (drop / "again.dcm").write_bytes(data[0])  # dropped again after the upgrade
    (drop / "b.dcm").write_bytes(data[1])
    archive = ScriptedArchive()
    summary = _intake(tmp_path, archive, drop).run_once()
    assert summary.duplicates == 1 and summary.stored == 1 and len(archive.stored) == 1
    raw = db.read_bytes().decode("latin-1") + "".join(
        p.read_bytes().decode("latin-1") for p in home.joinpath("data").glob("archive.db-*")
    )
    for blob in data:
        assert hashlib.sha256(blob).hexdigest() not in raw
    assert path_key(drop / "b.dcm") not in raw and path_key(drop / "a.dcm") not in raw
    fp = Fingerprints(_keyring(home).pseudonym_key)
    j = Journal.open(db, fp)
    assert j.confirmed(fp.content(data[1])) == "stored" and j.confirmed(plain) is None
    assert j.converted == 0  # converted once, not again
    j.close()
    with pytest.raises(Exception, match="another keyring"):
        Journal.open(db, Fingerprints(b"\x01" * 32))


def test_reject_store_refuses_unknown_ids(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home, http_port=18042, dicom_port=18043)
    store = RejectStore(tmp_path / "rej", _keyring(home), Journal.open(home / "data" / "a.db"))
    with pytest.raises(Exception, match="archive rejects list"):
        store.read("r-../../etc/passwd")


def test_scan_takes_files_that_landed_long_ago_at_once_and_waits_for_fresh_ones(
    tmp_path: Path,
) -> None:
    """A file unchanged for `stable_seconds` before the scan is complete already (it was
    copied while the watcher was stopped); one written just now must still wait."""
    import dataclasses
    import time

    drop = tmp_path / "drop"
    drop.mkdir()
    data = [to_bytes(ds) for ds in make_ct_series(2)]
    old, fresh = drop / "old.dcm", drop / "fresh.dcm"
    old.write_bytes(data[0])
    fresh.write_bytes(data[1])
    landed = time.time() - 60
    os.utime(old, (landed, landed))
    intake = _intake(tmp_path, ScriptedArchive(), drop)
    intake.settings = dataclasses.replace(intake.settings, stable_seconds=30.0)
    intake.tracker.stable_seconds = 30.0
    intake.scan(drop)
    assert intake.tracker.ready(time.monotonic()) == [old.resolve()]
    assert fresh.resolve() in intake.tracker
    intake.audit.close()

"""Intake domain: completeness, backoff, answer classification, journal resume,
containers and reason files, and the engine end to end with a scripted archive."""

from __future__ import annotations

import os
import random
import zipfile
from pathlib import Path

from pydicom import dcmread
from pydicom.fileset import FileSet

from archive.config import load_config
from archive.home import init_home
from archive.intake import (
    Backoff,
    CompletenessTracker,
    Intake,
    IntakeSettings,
    Journal,
    UploadResult,
    Verdict,
    dicomdir_references,
    extract_zip,
    is_dicomdir,
    private_workdir,
    write_reason,
)
from archive.intake.journal import path_key
from archive.intake.uploader import classify
from tests.corpus import make_ct_series, to_bytes


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


def test_reason_file_is_private_and_plain(tmp_path: Path) -> None:
    path = write_reason(tmp_path / "rej" / "DOE.dcm", "not a DICOM file", 7)
    assert path.name == "DOE.dcm.reason.txt" and (path.stat().st_mode & 0o777) == 0o600
    assert "not a DICOM file" in path.read_text() and "7" in path.read_text()


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


def _intake(tmp_path: Path, archive: ScriptedArchive, drop: Path) -> Intake:
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
    return Intake(config, drop, settings, archive)  # type: ignore[arg-type]


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


def test_engine_moves_rejects_with_reason(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "junk.txt").write_bytes(b"hello")
    intake = _intake(tmp_path, ScriptedArchive([Verdict.REJECTED]), drop)
    summary = intake.run_once()
    assert summary.rejected == 1 and not (drop / "junk.txt").exists()
    assert (intake.rejects_dir / "junk.txt").read_bytes() == b"hello"
    assert (intake.rejects_dir / "junk.txt.reason.txt").is_file()


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

"""The watch folder against a real Orthanc: live drops, containers, crashes, outages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.fileset import FileSet

from archive import db
from archive.access import AccessStore
from tests.corpus import make_ct_series, to_bytes
from tests.harness import ARCHIVE_BIN, RunningArchive, add_user


@pytest.fixture
def archive(archive_home: RunningArchive, tmp_path: Path) -> Iterator[RunningArchive]:
    add_user(archive_home, "intake", ["personnel"])
    conn = db.connect(archive_home.config.home.db_path)
    try:
        _, token = AccessStore(conn).create_token("intake", datetime.now(UTC), label="intake")
    finally:
        conn.close()
    token_file = tmp_path / "intake.token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    archive_home.env["ARCHIVE_INTAKE_TOKEN_FILE"] = str(token_file)
    archive_home.start()
    try:
        yield archive_home
    finally:
        archive_home.stop()


def _count(archive: RunningArchive) -> int:
    if archive.health() is None:  # None while the archive is busy restarting
        return -1
    return archive.counts()["instances"]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _watch_once(archive: RunningArchive, drop: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ARCHIVE_BIN, "watch", str(drop), "--home", str(archive.home), "--once", "--json",
         *extra],  # fmt: skip
        capture_output=True, text=True, env=archive.env, timeout=300, check=False,
    )  # fmt: skip


def _start_watcher(archive: RunningArchive, drop: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [ARCHIVE_BIN, "watch", str(drop), "--home", str(archive.home), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=archive.env,
    )  # fmt: skip


# Sources vanish only once the archive confirmed them; health (which calls back into
# Orthanc) is read after the batch, not polled under load.
def _wait(predicate, timeout: float = 90, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _series(n: int, seed: int) -> list[bytes]:
    return [to_bytes(ds) for ds in make_ct_series(n, patient=f"WATCH^{seed}", seed=seed)]


def _journal_attempts(archive: RunningArchive) -> list[int]:
    conn = db.connect(archive.config.home.db_path)
    try:
        return [r[0] for r in conn.execute("SELECT attempts FROM intake_sources")]
    finally:
        conn.close()


def test_once_handles_good_bad_held_zip_and_dicomdir(archive: RunningArchive, tmp_path: Path):
    drop = tmp_path / "drop"
    (drop / "nested" / "deeper").mkdir(parents=True)
    good = _series(3, seed=1)
    for i, data in enumerate(good):
        (drop / "nested" / "deeper" / f"DOE_JANE_{i}.dcm").write_bytes(data)
    (drop / "copy_of_0.dcm").write_bytes(good[0])  # duplicate bytes
    (drop / "notes.txt").write_text("not dicom at all " * 40)
    (drop / "truncated.dcm").write_bytes(_series(1, seed=2)[0][:700])
    zipped = _series(2, seed=3)
    with zipfile.ZipFile(drop / "transfer.zip", "w") as zf:
        for i, data in enumerate(zipped):
            zf.writestr(f"study/IMG{i}", data)
    media = drop / "media"
    fileset = FileSet()
    for i, ds in enumerate(make_ct_series(2, patient="MEDIA^CASE", seed=4)):
        path = tmp_path / f"m{i}.dcm"
        path.write_bytes(to_bytes(ds))
        fileset.add(dcmread(path))
    fileset.write(media)
    assert (media / "DICOMDIR").is_file()

    result = _watch_once(archive, drop)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    # The duplicate is either skipped (bytes already confirmed) or re-uploaded harmlessly.
    assert summary["stored"] == 3 + 2 + 2, result.stdout
    assert summary["duplicates"] + summary["already"] == 1, summary
    assert summary["rejected"] == 2
    assert _count(archive) == 7
    assert _files(drop) == []  # every source deleted (DICOMDIR too), rejects moved out
    rejects = archive.config.home.data_dir / "intake" / "rejects"
    names = sorted(p.name for p in _files(rejects))
    assert names == ["notes.txt", "notes.txt.reason.txt", "truncated.dcm",
                     "truncated.dcm.reason.txt"]  # fmt: skip
    reason = (rejects / "truncated.dcm.reason.txt").read_text()
    assert "truncated" in reason and "DOE" not in reason
    assert (rejects.stat().st_mode & 0o077) == 0
    # Nothing unpacked is left on the data volume, nothing went to /tmp.
    work = archive.config.home.data_dir / "intake" / "work"
    assert _files(work) == []
    audit = (archive.config.home.audit_dir / "audit.jsonl").read_text()
    assert "intake.stored" in audit and "intake.rejected" in audit and "intake.deleted" in audit
    assert "DOE_JANE" not in audit and "notes.txt" not in audit


def test_live_drops_slow_copy_parts_and_rename(archive: RunningArchive, tmp_path: Path):
    drop = tmp_path / "drop"
    drop.mkdir()
    watcher = _start_watcher(archive, drop)
    try:
        time.sleep(1.0)  # watcher up
        data = _series(3, seed=10)
        # Copied slowly in chunks, the handle kept open (closed only at the end).
        with open(drop / "slow.dcm", "wb") as handle:
            for start in range(0, len(data[0]), 1500):
                handle.write(data[0][start : start + 1500])
                handle.flush()
                time.sleep(0.15)
        # Written in parts: a second file grown by appends while the first is copied.
        part = drop / "sub" / "parts.dcm"
        part.parent.mkdir()
        with open(part, "wb") as handle:
            half = len(data[1]) // 2
            handle.write(data[1][:half])
            handle.flush()
            time.sleep(0.6)
            handle.write(data[1][half:])
        # Renamed in place: written under a temporary name, then renamed.
        tmp = drop / "renamed.dcm.part"
        tmp.write_bytes(data[2][:1000])
        time.sleep(0.4)
        with open(tmp, "ab") as handle:
            handle.write(data[2][1000:])
        tmp.rename(drop / "renamed.dcm")
        _wait(lambda: _files(drop) == [], what="three stored")
        assert _count(archive) == 3
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=60)
    summary = json.loads(out)
    assert summary["stored"] == 3 and summary["rejected"] == 0, (summary, err)


def test_watcher_killed_mid_batch_then_restarted(archive: RunningArchive, tmp_path: Path):
    drop = tmp_path / "drop"
    drop.mkdir()
    payloads = _series(40, seed=20)
    for i, data in enumerate(payloads):
        (drop / f"img{i:03d}.dcm").write_bytes(data)
    watcher = _start_watcher(archive, drop)
    _wait(lambda: len(_files(drop)) <= 30, what="part of the batch")
    os.kill(watcher.pid, signal.SIGKILL)
    watcher.wait()
    left = len(_files(drop))
    assert 0 < left < 40
    stored_before = _count(archive)
    assert stored_before >= 40 - left  # never deleted before it was stored
    watcher = _start_watcher(archive, drop)
    try:
        _wait(lambda: _files(drop) == [], what="all stored")
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.communicate(timeout=60)
    assert _count(archive) == 40
    attempts = _journal_attempts(archive)
    # At most the uploads in flight at the kill (4 workers) were sent twice.
    assert len(attempts) == 40 and sum(attempts) <= 40 + 4


def test_archive_stopped_mid_batch_then_started(archive: RunningArchive, tmp_path: Path):
    drop = tmp_path / "drop"
    drop.mkdir()
    first, second = _series(6, seed=30), _series(6, seed=31)
    watcher = _start_watcher(archive, drop)
    try:
        time.sleep(1.0)
        for i, data in enumerate(first):
            (drop / f"a{i}.dcm").write_bytes(data)
        _wait(lambda: _files(drop) == [], what="first half")
        assert _count(archive) == 6
        archive.stop()
        for i, data in enumerate(second):
            (drop / f"b{i}.dcm").write_bytes(data)
        time.sleep(4)  # retries against a stopped archive
        assert len(_files(drop)) == 6  # kept, never deleted
        archive.start()
        _wait(lambda: _files(drop) == [], timeout=120, what="retry")
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, _ = watcher.communicate(timeout=60)
    summary = json.loads(out)
    assert summary["stored"] == 12 and summary["retried"] >= 6


def test_permission_denied_leaves_file_with_reason(archive: RunningArchive, tmp_path: Path):
    if os.geteuid() == 0:
        pytest.skip("root reads any file; permission denied cannot be produced")
    drop = tmp_path / "drop"
    drop.mkdir()
    locked = drop / "locked.dcm"
    locked.write_bytes(_series(1, seed=40)[0])
    locked.chmod(0)
    result = _watch_once(archive, drop)
    summary = json.loads(result.stdout)
    assert summary["denied"] == 1 and locked.exists()
    rejects = archive.config.home.data_dir / "intake" / "rejects"
    assert "permission denied" in (rejects / "locked.dcm.reason.txt").read_text()
    locked.chmod(0o600)
    assert json.loads(_watch_once(archive, drop).stdout)["stored"] == 1
    assert not locked.exists()

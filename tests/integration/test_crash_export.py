"""Power cut mid-export: SIGKILL the archive while it builds an approved removal package.

One 60-slice 512x512 CT study (~30 MB, so a package takes a noticeable time to build)
is ingested once for the module. Each seed makes and approves a fresh removal request
(two downloads), starts `archive removals export` as a subprocess, waits until the
archive has spent the download, then SIGKILLs serve and Orthanc together: two seeds at a
random part of the measured build time (the plugin reading images and encrypting), one
the moment the package starts to arrive at the CLI. After the restart:

- the archive starts, and every stored instance decrypts byte-identical to before;
- no package, whole or partial, exists: the CLI reported one line and wrote nothing
  (it streams to a hidden temporary, fsyncs, and only then moves it into place), and
  nothing in HOME carries an age header or a `.partial` name (the package only ever
  lived in the plugin's memory);
- the download ledger and the audit log agree (the decision below);
- a retry downloads a complete package that verifies against what is stored;
- stopped, `archive fsck` finds storage and Orthanc's index in agreement and
  `archive audit verify` passes the chain.

The decision on a download that was spent but never delivered: IT STAYS SPENT. A
demanding school cannot tell "nothing left the building" from "the answer left but the
archive died before it heard", so the spend counts against max_downloads (fail closed)
and the approver grants another if needed. Every spend has a durable audit record,
"governance.removal.download" (detail: download number), written inside the spending
transaction before it commits and before any image is read; "governance.removal.export"
success (durable, written before the package is handed to Orthanc to send) or failure
says what became of it. So: every recorded download has its audit record; a download
record without a ledger entry can only be the one cut between the audit write and the
commit, never delivered; every export success names a recorded download.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyrage
import pytest

from archive import db
from archive.audit.query import iter_records
from archive.export import open_package, verify_package
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import ARCHIVE_BIN, RunningArchive, add_user, client, new_archive, register_node
from tests.integration.test_pulls import wait_for_cases

SCU = "EXPORT_SCU"
N = 60
REQUESTER, APPROVER = "trainer1", "tpd1"
AGE_HEADER = b"age-encryption.org/"


@dataclass
class Module:
    archive: RunningArchive
    case_id: str
    before: list[bytes]  # every stored DICOM file, decrypted, sorted
    build_seconds: float  # measured: from the spend to the package's first bytes
    password_file: Path
    root: Path


def _spent(archive: RunningArchive, rid: int, conn: sqlite3.Connection | None = None) -> int:
    """Downloads the archive has committed for request `rid` (read from its database)."""
    own = conn is None
    conn = conn or db.connect(archive.config.home.db_path)
    try:
        row = conn.execute(
            "SELECT count(*) FROM governance_removal_downloads WHERE request_id = ?", (rid,)
        ).fetchone()
        return int(row[0])
    finally:
        if own:
            conn.close()


def _approved_request(archive: RunningArchive, case_id: str, downloads: int) -> int:
    with client(archive, REQUESTER) as http:
        made = http.post(
            "/teaching/removals",
            json={"cases": [case_id], "purpose": "teaching_materials", "destination": "lecture"},
        )
    assert made.status_code == 200, made.text
    rid = made.json()["id"]
    with client(archive, APPROVER) as http:
        ok = http.post(
            f"/teaching/removals/{rid}/approve",
            json={"text": "Approved for the lecture only.", "max_downloads": downloads},
        )
    assert ok.status_code == 200, ok.text
    return rid


def _start_export(module: Module, rid: int, out: Path, recipient: str) -> subprocess.Popen:
    archive = module.archive
    return subprocess.Popen(
        [
            ARCHIVE_BIN, "removals", "export", str(rid), "-o", str(out),
            "--recipient", recipient, "--as", REQUESTER,
            "--password-file", str(module.password_file), "--home", str(archive.home),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=archive.env,
        start_new_session=True,
    )  # fmt: skip


def _wait_spent(archive: RunningArchive, rid: int, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    conn = db.connect(archive.config.home.db_path)
    try:
        while _spent(archive, rid, conn) < count:
            if process.poll() is not None:
                raise AssertionError(f"export ended before spending: {process.stderr.read()}")
            assert time.monotonic() < deadline, "the export never spent its download"
            time.sleep(0.005)
    finally:
        conn.close()


def _receiving(directory: Path) -> bool:
    """Package bytes have reached `directory` (a non-empty temporary, or the file)."""
    for path in directory.iterdir():
        try:
            if path.stat().st_size > 0:
                return True
        except FileNotFoundError:
            continue  # renamed into place meanwhile: seen on the next look
    return False


def _wait_answer(out: Path, process: subprocess.Popen) -> bool:
    """Wait until the CLI starts receiving the package (bytes in its temporary, which it
    creates before asking); False if it ended first."""
    deadline = time.monotonic() + 60
    while not _receiving(out.parent):
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the package never started to arrive"
        time.sleep(0.001)
    return True


def _audit(archive: RunningArchive, action: str, rid: int) -> list[dict]:
    return [
        r
        for r in iter_records(archive.config.home.audit_dir)
        if r.get("action") == action and r.get("target") == str(rid)
    ]


def _partial_packages(directory: Path) -> list[str]:
    """Files that are (pieces of) a package: an age header or a temporary's name."""
    found = []
    for path in directory.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        if path.name.endswith((".partial", ".age")):
            found.append(str(path))
            continue
        with path.open("rb") as handle:
            if handle.read(len(AGE_HEADER)) == AGE_HEADER:
                found.append(str(path))
    return found


def _check_package(module: Module, blob: bytes, identity: pyrage.x25519.Identity) -> None:
    contents = open_package(blob, identity=str(identity))
    assert verify_package(contents) == []
    listed = {i["sha256"] for c in contents.manifest["cases"] for i in c["instances"]}
    assert listed == {hashlib.sha256(b).hexdigest() for b in module.before}
    assert len(listed) == N


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Module]:
    root = tmp_path_factory.mktemp("crash_export")
    archive = new_archive(root / "home")
    register_node(archive, "export-scu", SCU, store=True)
    add_user(archive, REQUESTER, ["trainer"])
    add_user(archive, APPROVER, ["tpd"])
    password_file = root / "requester.pw"
    password_file.write_text(archive.passwords[REQUESTER])
    series = make_ct_series(N, "EXPORT^CRASH", "XC1", rows=512, columns=512, seed=14)
    files = write_files(root / "in", [to_bytes(ds) for ds in series])
    archive.start()
    try:
        for _ in range(30):  # the DICOM port may open after /teaching/health
            sent = storescu(archive.dicom_port, archive.aet, SCU, files)
            if sent.returncode == 0:
                break
            time.sleep(1)
        assert sent.returncode == 0, sent.stderr
        case_id = wait_for_cases(archive, 1)[0]
        before = sorted(archive.stored_dicom())
        assert len(before) == N
        module = Module(archive, case_id, before, 0.0, password_file, root)
        # (A malformed key is refused before anything is spent: a typo burns no download.)
        rid = _approved_request(archive, case_id, downloads=2)
        with client(archive, REQUESTER) as http:
            typo = http.get(f"/teaching/removals/{rid}/download", params={"recipient": "age1typo"})
        assert typo.status_code == 400 and "age public key" in typo.json()["error"], typo.text
        assert _spent(archive, rid) == 0
        # Calibrate: two exports run to their end, each timed from the spend until the
        # package starts to arrive (the build); the shorter one counts.
        builds = []
        for number in (1, 2):
            identity = pyrage.x25519.Identity.generate()
            out = root / "calibration" / f"{number}.age"
            out.parent.mkdir(exist_ok=True)
            process = _start_export(module, rid, out, str(identity.to_public()))
            _wait_spent(archive, rid, number, process)
            spent_at = time.monotonic()
            assert _wait_answer(out, process), process.communicate()
            builds.append(time.monotonic() - spent_at)
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            _check_package(module, out.read_bytes(), identity)
            out.unlink()
        module.build_seconds = min(builds)
    finally:
        archive.stop()
    yield module


@pytest.mark.parametrize(("seed", "phase"), [(141, "build"), (142, "build"), (143, "transfer")])
def test_sigkill_mid_export_loses_nothing_and_keeps_the_ledger(
    module: Module, seed: int, phase: str
) -> None:
    """`build`: killed at a random point while the plugin reads the images and builds the
    package (after the spend, before the first byte leaves): the CLI must fail, with one
    line, leaving no file. `transfer`: killed the moment the package starts to arrive:
    the CLI either got all of it (it was sent whole before the cut; then the export's
    success is on record) or fails leaving no file - never a partial package."""
    rng = random.Random(seed)
    archive = module.archive
    out_dir = module.root / f"out-{seed}"
    out_dir.mkdir()
    out = out_dir / "package.age"
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    archive.start()
    try:
        rid = _approved_request(archive, module.case_id, downloads=2)
        process = _start_export(module, rid, out, recipient)
        _wait_spent(archive, rid, 1, process)
        if phase == "build":
            # Early in the build: a run faster than the calibration (a quieter moment)
            # must still be cut, or the test would prove nothing and fail.
            time.sleep(rng.uniform(0.0, 0.35) * module.build_seconds)
            arrived = _receiving(out_dir)
        else:
            arrived = _wait_answer(out, process)
        finished_first = process.poll() is not None
        archive.kill()  # the power cut: serve and Orthanc SIGKILLed together
        _, err = process.communicate(timeout=120)
        if phase == "build":  # (a transfer may end whole first: checked below)
            assert not finished_first, f"seed {seed}: the export ended before the kill"
            assert not arrived and process.returncode != 0, (
                f"seed {seed}: the package was already sent when the kill came "
                f"(build measured {module.build_seconds:.2f} s); nothing was cut"
            )
        delivered_first = process.returncode == 0
        if delivered_first:
            assert sorted(p.name for p in out_dir.iterdir()) == ["package.age"]
            _check_package(module, out.read_bytes(), identity)
            out.unlink()
        else:
            assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
            assert "Traceback" not in err and "broke off" in err, err
        assert sorted(p.name for p in out_dir.iterdir()) == []  # no temporary left

        archive.start()
        assert archive.counts()["instances"] == N
        assert sorted(archive.stored_dicom()) == module.before  # decrypt, byte-identical
        assert _partial_packages(archive.home) == []
        with client(archive, REQUESTER) as http:
            shown = http.get(f"/teaching/removals/{rid}").json()
            cases = http.get(f"/teaching/cases/{module.case_id}")
        assert cases.status_code == 200, cases.text  # the catalogue still serves the case
        assert cases.json()["status"] == "available", cases.json()
        # The spent-but-undelivered download stays spent and recorded (fail closed).
        assert [d["download_number"] for d in shown["downloads"]] == [1], shown
        assert shown["approval"]["downloads_used"] == 1
        assert shown["status"] == "exported"
        ledger = {1}
        spends = [
            r["detail"]["download"] for r in _audit(archive, "governance.removal.download", rid)
        ]
        assert spends == [1], spends  # durable before the spend committed
        exports = _audit(archive, "governance.removal.export", rid)
        assert {r["detail"].get("download") for r in exports} <= ledger, exports
        if delivered_first:  # whatever was delivered has its success on record
            assert [r["outcome"] for r in exports] == ["success"], exports

        # A retry after the restart works while downloads remain, to the same name.
        retry = _start_export(module, rid, out, recipient)
        _, err = retry.communicate(timeout=120)
        assert retry.returncode == 0, err
        assert sorted(p.name for p in out_dir.iterdir()) == ["package.age"]
        _check_package(module, out.read_bytes(), identity)
        spends = [
            r["detail"]["download"] for r in _audit(archive, "governance.removal.download", rid)
        ]
        assert spends == [1, 2], spends
        delivered = [
            r["detail"]["download"]
            for r in _audit(archive, "governance.removal.export", rid)
            if r["outcome"] == "success"
        ]
        assert delivered[-1:] == [2], delivered
        with client(archive, REQUESTER) as http:
            shown = http.get(f"/teaching/removals/{rid}").json()
        assert [d["download_number"] for d in shown["downloads"]] == [1, 2]
    finally:
        archive.stop()

    assert _partial_packages(archive.home) == []
    fsck = archive.cli("fsck", "--json")  # storage and Orthanc's index agree
    assert fsck.returncode == 0 and json.loads(fsck.stdout)["ok"], fsck.stdout + fsck.stderr
    audit = archive.cli("audit", "verify", "--json")
    assert audit.returncode == 0 and json.loads(audit.stdout)["ok"], audit.stdout + audit.stderr

"""Encryption at rest in a running archive: tamper alerts, rotation while serving, and
nothing in clear under the home (index, tmp, audit, storage) after real ingests.

Reads go through Orthanc's own REST routes (/instances/{id}/tags makes Orthanc read the
DICOM attachment through the storage area). The access policy rightly opens those routes
to nobody, so these archives run on the benchmark entry with an open REST API
(tests.harness.OPEN_REST, audited; the production plugin has no such switch): what is
under test here is the storage area, not the filter. Every archive stays on loopback
and is stopped at teardown.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from archive.audit.query import iter_records
from archive.vault import EncryptedStore, Keyring, keyring_path, read_header
from tests.corpus import make_ct_series, make_planted_instance, to_bytes
from tests.harness import DICOM_CONTENT, OPEN_REST, PASSPHRASE, RunningArchive, new_archive

UNTIL_PIXELS = 3  # Orthanc's "dicom-until-pixel-data" attachment: what /tags reads


def _open_archive(root: Path) -> RunningArchive:
    archive = new_archive(root)
    archive.env.update(OPEN_REST)
    return archive


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[RunningArchive]:
    archive = _open_archive(tmp_path / "home")
    archive.start()
    try:
        yield archive
    finally:
        archive.stop()


def _http(archive: RunningArchive) -> httpx.Client:
    return httpx.Client(base_url=archive.url, timeout=60)


def _upload(archive: RunningArchive, payload: bytes) -> str:
    with _http(archive) as http:
        answer = http.post("/instances", content=payload)
    assert answer.status_code == 200, answer.text
    return answer.json()["ID"]


def _instances(archive: RunningArchive) -> list[str]:
    with _http(archive) as http:
        return http.get("/instances").json()


def _attachment_uuid(archive: RunningArchive, instance: str, name: str = "dicom") -> str:
    with _http(archive) as http:
        answer = http.get(f"/instances/{instance}/attachments/{name}/info")
    assert answer.status_code == 200, answer.text
    return answer.json()["Uuid"]


def _read_tags(archive: RunningArchive, instance: str) -> httpx.Response:
    """Orthanc reads the instance's dicom-until-pixel-data attachment."""
    with _http(archive) as http:
        return http.get(f"/instances/{instance}/tags")


def _read_file(archive: RunningArchive, instance: str) -> httpx.Response:
    """Orthanc reads the instance's DICOM attachment."""
    with _http(archive) as http:
        return http.get(f"/instances/{instance}/file")


def audit_until(directory: Path, wanted, timeout: float = 15.0) -> list[dict]:
    """Audit records once `wanted(records)` holds: the plugin writes them in groups."""
    deadline = time.monotonic() + timeout
    while True:
        records = iter_records(directory) if directory.is_dir() else []
        if wanted(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _store(archive: RunningArchive) -> EncryptedStore:
    ring = Keyring.open(keyring_path(archive.config.home.keys_dir), PASSPHRASE)
    return EncryptedStore(archive.config.home.storage_dir, ring)


def _plaintexts(archive: RunningArchive) -> dict[str, bytes]:
    """Every stored DICOM file, decrypted from disk, by attachment uuid."""
    store = _store(archive)
    return {u: store.read(u, ct) for u, ct, _ in store.entries() if ct == DICOM_CONTENT}


def _restart(archive: RunningArchive) -> None:
    """A fresh Orthanc: no parsed-DICOM cache, so the next read goes to the storage area."""
    archive.stop()
    archive.start()


# ----- tamper ---------------------------------------------------------------------------


def test_flipped_bit_and_copied_header_fail_closed_and_orthanc_stays_up(
    archive: RunningArchive,
) -> None:
    ids = [_upload(archive, to_bytes(ds)) for ds in make_ct_series(5, patient_id="PIDTAMPER")]
    flip_dicom, flip_tags, swapped, donor, intact = ids
    store = _store(archive)

    def path_of(instance: str, name: str = "dicom", ct: int = DICOM_CONTENT) -> Path:
        return store.path_for(_attachment_uuid(archive, instance, name), ct)

    # One bit in the body of a DICOM attachment, one bit in a dicom-until-pixel-data
    # attachment, and a header copied from another file over a third.
    bad_paths = {
        flip_dicom: path_of(flip_dicom),
        flip_tags: path_of(flip_tags, "dicom-until-pixel-data", UNTIL_PIXELS),
        swapped: path_of(swapped),
    }
    for instance in (flip_dicom, flip_tags):
        data = bytearray(bad_paths[instance].read_bytes())
        data[116 + (len(data) - 116) // 2] ^= 0x01
        bad_paths[instance].write_bytes(bytes(data))
    donor_header = path_of(donor).read_bytes()[:116]
    body = bad_paths[swapped].read_bytes()[116:]
    bad_paths[swapped].write_bytes(donor_header + body)
    _restart(archive)  # no parsed-DICOM cache: reads go to the storage area

    for answer in (
        _read_file(archive, flip_dicom),
        _read_tags(archive, flip_tags),
        _read_file(archive, swapped),
    ):
        assert answer.status_code >= 500, answer.status_code
        assert "PIDTAMPER" not in answer.text and b"DICM" not in answer.content
    assert archive.health() is not None  # Orthanc stays up
    for good in (donor, intact):
        assert _read_file(archive, good).status_code == 200
        assert _read_tags(archive, good).status_code == 200

    log = archive.log.read_text(errors="replace")
    bad_uuids = {path.name.split(".")[0] for path in bad_paths.values()}

    def tampered_of(records: list[dict]) -> set:
        return {r.get("target") for r in records if r.get("action") == "security.tamper"}

    audit = audit_until(archive.config.home.audit_dir, lambda rs: bad_uuids <= tampered_of(rs))
    tampered = tampered_of(audit)
    for path in bad_paths.values():
        uuid = path.name.split(".")[0]
        alerts = [line for line in log.splitlines() if "SECURITY ALERT" in line and uuid in line]
        assert alerts, f"no SECURITY ALERT for {uuid}"
        assert "authenticate" in alerts[0], alerts[0]  # says what failed
        assert uuid in tampered
    for good in (donor, intact):
        assert _attachment_uuid(archive, good) not in tampered


# ----- rotation while the archive runs ---------------------------------------------------


def test_rotation_while_serving_then_old_key_retired(archive: RunningArchive) -> None:
    series = make_ct_series(3, patient_id="PIDROT1")
    planted, _ = make_planted_instance()
    ids = [_upload(archive, to_bytes(ds)) for ds in [*series, planted]]
    before = _plaintexts(archive)
    assert len(before) == len(ids)
    old_primary = _store(archive).keyring.primary_kek_id

    result = archive.cli("keys", "rotate", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["server_running"] is True
    assert report["rewrapped"] == report["files"] >= len(ids)
    assert report["retired"] == []  # never while the archive runs
    new_primary = report["new_primary"]
    assert new_primary != old_primary
    store = _store(archive)
    assert {read_header(p).key_id for p in store.paths()} == {new_primary}

    # The running plugin picked up the new key: a new ingest is wrapped under it, and
    # rewrapped files read through the same (never restarted) Orthanc.
    extra = _upload(archive, to_bytes(make_ct_series(1, patient_id="PIDROT2")[0]))
    extra_uuid = _attachment_uuid(archive, extra)
    assert read_header(store.path_for(extra_uuid, DICOM_CONTENT)).key_id == new_primary
    by_uuid = {_attachment_uuid(archive, i): i for i in ids}
    for uuid, instance in by_uuid.items():
        answer = _read_file(archive, instance)
        assert answer.status_code == 200 and answer.content == before[uuid]
        assert _read_tags(archive, instance).status_code == 200
    assert _read_file(archive, extra).status_code == 200

    # Retire the old key (only allowed with the archive stopped): the keyring no longer
    # holds its material, and everything still reads back, byte-identical.
    archive.stop()
    result = archive.cli("keys", "rotate", "--json")
    assert result.returncode == 0, result.stderr
    second = json.loads(result.stdout)
    assert old_primary in second["retired"] and new_primary in second["retired"]
    ring = Keyring.open(keyring_path(archive.config.home.keys_dir), PASSPHRASE)
    assert old_primary not in ring.kek_ids() and ring.is_retired(old_primary)
    assert old_primary not in json.dumps(ring.payload()["keks"])
    after = _plaintexts(archive)
    for uuid, plain in before.items():
        assert after[uuid] == plain, f"{uuid} changed across rotation"
    archive.start()
    for uuid, instance in by_uuid.items():
        answer = _read_file(archive, instance)
        assert answer.status_code == 200 and answer.content == before[uuid]
        assert _read_tags(archive, instance).status_code == 200
    assert _read_file(archive, extra).status_code == 200


# ----- nothing in clear at rest ------------------------------------------------------------


def _needles(planted: set[str]) -> list[bytes]:
    return [b"DICM", *(value.encode() for value in planted)]


def scan(root: Path, needles: list[bytes], skip: Path | None = None) -> list[str]:
    """Every (file, needle) found in clear under `root` (skipping the subtree `skip`)."""
    found = []
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {n!r}" for n in needles if n in data]
    return found


def test_nothing_in_clear_under_the_home(archive: RunningArchive, tmp_path: Path) -> None:
    ds, planted = make_planted_instance()
    clear_input = tmp_path / "input.dcm"
    clear_input.write_bytes(to_bytes(ds))
    needles = _needles(planted)
    assert scan(tmp_path, needles, skip=archive.home)  # the scan does find clear data
    _upload(archive, clear_input.read_bytes())
    for sds in make_ct_series(3, patient="PLANTFAMILY^PLANTGIVEN", patient_id="PIDPLANT7781"):
        _upload(archive, to_bytes(sds))
    _restart(archive)  # Orthanc flushes its index; the tmp dir is what it left
    home = archive.config.home
    index_files = [p for p in home.index_dir.rglob("*") if p.is_file()]
    assert index_files and sum(p.stat().st_size for p in index_files) > 0
    assert home.tmp_dir.is_dir()
    found = in_clear(home.root, needles)
    assert not found, found


def in_clear(root: Path, needles: list[bytes]) -> list[str]:
    """Findings that matter: any planted value anywhere; the DICOM magic anywhere but
    in the archive's own configuration text (a template may name it)."""
    return [
        f
        for f in scan(root, needles)
        if not f.endswith("b'DICM'") or not f.rsplit(":", 1)[0].endswith((".toml", ".json"))
    ]


# ----- gocryptfs volume --------------------------------------------------------------------

from archive.vault import volume as _volume  # noqa: E402

FUSE_OK, FUSE_WHY = _volume.fuse_usable()


@pytest.mark.skipif(not FUSE_OK, reason=f"FUSE mounting impossible here: {FUSE_WHY}")
def test_archive_on_gocryptfs_volume(tmp_path: Path) -> None:
    archive = _open_archive(tmp_path / "home")
    archive.serve_args = ["--stable-age", "2"]  # no --allow-unencrypted-volume
    home = archive.config.home
    text = home.config_file.read_text()
    home.config_file.write_text(text.replace('kind = "none"', 'kind = "gocryptfs"'))
    created = archive.cli("volume", "create")
    assert created.returncode == 0, created.stderr
    ds, planted = make_planted_instance()
    needles = _needles(planted)
    try:
        archive.start()  # serve mounts the volume with the keyring's volume secret
        status = json.loads(archive.cli("status", "--json").stdout)
        assert status["volume_encrypted"] is True
        assert status["volume_state"]["kind"] == "gocryptfs"
        assert status["volume_mounted_by_serve"] is True
        assert status["running_unencrypted"] is False
        _upload(archive, to_bytes(ds))
        for sds in make_ct_series(2, patient="PLANTFAMILY^PLANTGIVEN", patient_id="PIDPLANT7781"):
            _upload(archive, to_bytes(sds))
        assert archive.counts()["instances"] == 3
        backing = [p for p in home.volume_dir.rglob("*") if p.is_file()]
        assert len(backing) > 5  # index, storage, database, audit live in there
        assert not scan(home.volume_dir, needles)
        # the plaintext view holds de-identified, encrypted attachments only
        assert not in_clear(home.data_dir, needles)
        records = audit_until(
            home.audit_dir, lambda rs: any(r.get("action") == "system.start" for r in rs)
        )
        starts = [r for r in records if r.get("action") == "system.start"]
        assert starts and starts[-1]["detail"]["unencrypted_volume"] is False
    finally:
        archive.stop()
    assert not _volume.status(home).mounted  # serve unmounted what it mounted
    assert not any(home.data_dir.iterdir())
    assert not in_clear(home.root, needles)
    # Restart: serve mounts again and the data is there.
    try:
        archive.start()
        assert archive.counts()["instances"] == 3
    finally:
        archive.stop()
        if _volume.status(home).mounted:
            _volume.unmount(home)
    shutil.rmtree(home.root, ignore_errors=True)

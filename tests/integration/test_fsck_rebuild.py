"""A power cut's one durability exception, end to end through a real Orthanc.

The storage area writes Orthanc 1.10's "DICOM until pixel data" copy (type 3) without
fsync (ops/BENCHMARKS.md). An OS crash before writeback can leave it empty; Orthanc then
cannot read that instance's tags, while its DICOM file is intact. `archive fsck --repair`
(archive stopped) rebuilds it from the DICOM file, checked against Orthanc's own index.
Orthanc's raw REST routes are read with the HTTP filter off (loopback only, audited), as
in test_vault_running: what is under test is the storage area, not the filter.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from archive.vault import Keyring
from archive.vault.keyring import keyring_path
from archive.vault.store import EncryptedStore
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import OPEN_REST, PASSPHRASE, new_archive, register_node

SCU = "REBUILDSCU"


def _fsck(archive, *extra: str) -> dict:
    result = archive.cli("fsck", "--json", *extra)
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def test_an_emptied_until_pixel_data_copy_is_rebuilt_and_tags_read_again(
    tmp_path: Path,
) -> None:
    archive = new_archive(tmp_path / "home")
    register_node(archive, "rebuild-scu", SCU, store=True)
    archive.env.update(OPEN_REST)
    files = write_files(tmp_path / "in", [to_bytes(ds) for ds in make_ct_series(3)])
    archive.start()
    try:
        assert storescu(archive.dicom_port, archive.aet, SCU, files).returncode == 0
        with httpx.Client(base_url=archive.url, timeout=60) as http:
            ids = http.get("/instances").json()
            tags = {i: http.get(f"/instances/{i}/tags?simplify").json() for i in ids}
            dicom = {i: http.get(f"/instances/{i}/file").content for i in ids}
    finally:
        archive.stop()
    assert len(ids) == 3 and all("SOPInstanceUID" in t for t in tags.values())
    ring = Keyring.open(keyring_path(archive.config.home.keys_dir), PASSPHRASE)
    store = EncryptedStore(archive.config.home.storage_dir, ring)
    until_pixels = [path for _, ct, path in store.entries() if ct == 3]
    assert len(until_pixels) == 3  # one per instance, as Orthanc 1.10 writes them
    until_pixels[0].write_bytes(b"")  # what an OS crash before writeback leaves

    archive.start()  # the damage is real: that instance's tags cannot be read
    try:
        with httpx.Client(base_url=archive.url, timeout=60) as http:
            codes = [http.get(f"/instances/{i}/tags?simplify").status_code for i in ids]
    finally:
        archive.stop()
    assert sorted(code == 200 for code in codes) == [False, True, True], codes

    report = _fsck(archive)
    [finding] = report["findings"]
    assert finding["kind"] == "damaged_file" and finding["repairable"] and not report["ok"]
    repaired = _fsck(archive, "--repair")
    assert [f["repaired"] for f in repaired["findings"]] == [True]
    assert _fsck(archive)["ok"]

    archive.start()
    try:
        with httpx.Client(base_url=archive.url, timeout=60) as http:
            for i in ids:  # every instance's tags read again, and its file unchanged
                assert http.get(f"/instances/{i}/tags?simplify").json() == tags[i]
                assert http.get(f"/instances/{i}/file").content == dicom[i]
    finally:
        archive.stop()

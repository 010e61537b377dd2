"""No callback waits on Orthanc while holding Python's lock (issue #20 finding 1).

Each test restarts the archive (files stored before the start are what froze it: Orthanc
reads them through the Python storage area), then does one request-path act while a
C-STORE runs and /teaching/health is polled every 0.2 s; every poll must answer within
5 s. Before the vault ledger, a pull of a case stored before the restart and the first
thumbnails after it hung the whole HTTP API until SIGKILL.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import generate_uid

from archive.render import icon_png
from tests.corpus import make_ct_series, make_sr_instance, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, add_user, base_env, client, register_node
from tests.integration.test_pulls import WS_AET, StoreSCP, _digests, wait_for_cases

pytestmark = pytest.mark.orthanc
SCU = "NODEAD_SCU"
DEADLINE_S = 5.0


class HealthPoller:
    """GET /teaching/health every 0.2 s in a thread; remembers the slowest answer."""

    def __init__(self, archive: RunningArchive) -> None:
        self.archive = archive
        self.slowest = 0.0
        self.failures: list[str] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.archive.url, timeout=DEADLINE_S, verify=False) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    answer = http.get("/teaching/health")
                    if answer.status_code != 200 or answer.json() != {"status": "ok"}:
                        self.failures.append(f"HTTP {answer.status_code}")
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.polls += 1
                self._stop.wait(0.2)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=DEADLINE_S + 2)

    def check(self) -> None:
        assert self.polls >= 2, "health was hardly polled"
        assert not self.failures, f"health did not answer: {self.failures[:5]}"
        assert self.slowest < DEADLINE_S, f"health took {self.slowest:.1f} s"


class Background:
    """A C-STORE of a fresh series by dcmtk storescu, in a thread."""

    def __init__(self, archive: RunningArchive, directory: Path, n: int = 20) -> None:
        series = make_ct_series(n, patient="BUSY^SENDER", patient_id=f"BUSY{time.time_ns()}")
        self.files = write_files(directory, [to_bytes(ds) for ds in series])
        self.archive = archive
        self.result = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.result = storescu(self.archive.dicom_port, self.archive.aet, SCU, self.files)

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._thread.join(timeout=120)

    def check(self) -> None:
        assert self.result is not None, "the concurrent C-STORE did not finish"
        assert self.result.returncode == 0, self.result.stderr


def _send(archive: RunningArchive, files: list[Path], *options: str) -> None:
    """storescu in one association; `options` e.g. -xw to propose JPEG 2000."""
    command = ["storescu", *options, "-aec", archive.aet, "-aet", SCU, "127.0.0.1"]
    for _ in range(30):  # the DICOM port may open a moment after /teaching/health
        sent = subprocess.run(
            [*command, str(archive.dicom_port), *map(str, files)],
            capture_output=True, text=True, env=base_env(), timeout=300, check=False,
        )  # fmt: skip
        if sent.returncode == 0:
            return
        time.sleep(1)
    raise AssertionError(sent.stderr)


def _restart(archive: RunningArchive) -> None:
    archive.stop()
    archive.start()


@pytest.fixture
def suite(archive_home: RunningArchive, tmp_path: Path) -> Iterator[tuple]:
    scp = StoreSCP(tmp_path / "ws1")
    register_node(archive_home, "nodead-scu", SCU, store=True)
    added = archive_home.cli(
        "workstations", "add", "ws-01", "--aet", WS_AET, "--host", "127.0.0.1",
        "--port", str(scp.port), "--location", "Suite room 2",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    add_user(archive_home, "trainer1", ["trainer"])
    add_user(archive_home, "pat", ["personnel"])
    try:
        yield archive_home, scp
    finally:
        archive_home.stop()
        scp.stop()


def test_pull_after_restart_answers_while_health_and_cstore_go_on(suite, tmp_path) -> None:
    archive, scp = suite
    archive.start()
    series = make_ct_series(12, patient="PULL^AFTER", patient_id="PIDRESTART")
    _send(archive, write_files(tmp_path / "in", [to_bytes(ds) for ds in series]))
    case_id = wait_for_cases(archive, 1)[0]
    stored = archive.stored_dicom()
    _restart(archive)

    with HealthPoller(archive) as health, Background(archive, tmp_path / "busy") as busy:
        with client(archive, "trainer1") as http:
            answer = http.post("/teaching/pulls", json={"cases": [case_id], "workstation": "ws-01"})
    busy.check()
    health.check()
    assert answer.status_code == 200, answer.text
    assert answer.json()["pulled"][0]["instances"] == 12
    received = scp.files()
    assert len(received) == 12
    assert _digests(received) == _digests(stored)
    _health_discloses_only_to_staff(archive)


def _health_discloses_only_to_staff(archive: RunningArchive) -> None:
    """Anonymous and non-personnel callers learn up/down only (issue #20 finding 10);
    callers the policy lets see the statistics get versions, AE title and counts."""
    assert archive.health() == {"status": "ok"}
    with client(archive, "trainer1") as http:
        assert http.get("/teaching/health").json() == {"status": "ok"}
    with client(archive, "pat") as http:
        details = http.get("/teaching/health").json()
    assert details["dicom_aet"] == archive.aet
    assert details["orthanc_version"] == "1.10.1"
    assert details["counts"]["instances"] >= 12 + 20
    with httpx.Client(base_url=archive.url, auth=("pat", "wrong password")) as http:
        assert http.get("/teaching/health").status_code in (401, 403)


def _jpeg2000(patient_id: str, study_uid: str) -> bytes:
    ds = pydicom.dcmread(get_testdata_file("MR2_J2KI.dcm"))  # JPEG 2000, MR
    ds.PatientID, ds.PatientName, ds.StudyInstanceUID = patient_id, "THUMB^CASE", study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return to_bytes(ds)


def _rtplan(patient_id: str, study_uid: str) -> bytes:
    ds = pydicom.dcmread(get_testdata_file("rtplan.dcm"), force=True)
    ds.PatientID, ds.PatientName, ds.StudyInstanceUID = patient_id, "THUMB^CASE", study_uid
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta = meta
    return to_bytes(ds)


def test_thumbnails_after_restart_with_ingest_going_on(suite, tmp_path) -> None:
    archive, _scp = suite
    archive.start()
    pid = "PIDTHUMBS"
    ct = make_ct_series(5, patient="THUMB^CASE", patient_id=pid)
    study = ct[0].StudyInstanceUID
    sr = make_sr_instance(patient="THUMB^CASE", patient_id=pid)
    sr.StudyInstanceUID = study
    payloads = [*(to_bytes(ds) for ds in ct), _rtplan(pid, study), to_bytes(sr)]
    _send(archive, write_files(tmp_path / "j2k", [_jpeg2000(pid, study)]), "-xw")
    _send(archive, write_files(tmp_path / "in", payloads))
    case_id = wait_for_cases(archive, 1)[0]
    deadline = time.monotonic() + 60
    with client(archive, "trainer1") as http:
        while len(http.get(f"/teaching/cases/{case_id}").json()["series"]) < 4:
            held = archive.cli("quarantine", "list", "--json").stdout
            assert time.monotonic() < deadline, f"not 4 series; quarantine: {held}"
            time.sleep(0.5)
    _restart(archive)

    images: dict[str, bytes] = {}
    with HealthPoller(archive) as health, Background(archive, tmp_path / "busy") as busy:
        with client(archive, "trainer1") as http:
            page = http.get("/teaching/cases", params={"sort": "added"})
            assert page.status_code == 200, page.text
            (item,) = [i for i in page.json()["items"] if "CT" in i["modalities"]]
            case = http.get(f"/teaching/cases/{item['case_id']}").json()
            for series in case["series"]:
                answer = http.get(series["thumbnail"])
                assert answer.status_code == 200, (series, answer.text)
                assert answer.headers["content-type"] == "image/png"
                images[series["modality"]] = answer.content
        # The busy series becomes stable and is catalogued (OnChange) under the poll too.
        wait_for_cases(archive, 2)
    busy.check()
    health.check()
    assert set(images) >= {"CT", "MR", "RTPLAN", "SR"}, sorted(images)
    assert images["RTPLAN"] == icon_png("RT PLAN")
    assert images["SR"] == icon_png("SR")
    for modality in ("CT", "MR"):  # MR: the JPEG 2000 instance, decoded and rendered
        image = Image.open(io.BytesIO(images[modality]))
        assert max(image.size) == 256 and image.convert("RGB").getpixel((0, 0)) != (38, 50, 64)


def _unknown_us() -> bytes:
    """An ultrasound from a device without a masking template: held in quarantine."""
    ds = pydicom.dcmread(get_testdata_file("US1_UNCR.dcm"))
    ds.Manufacturer = "Unknown Devices Ltd"
    return to_bytes(ds)


def test_release_and_withdrawal_after_restart_with_ingest(suite, tmp_path) -> None:
    """The allowlisted calls (ops/NO-RESTAPI.md): quarantine release posts to Orthanc,
    withdrawal reads a study's attachments and deletes it, and cataloguing reads the
    stable study, all while a C-STORE runs after a restart and health keeps answering."""
    from archive.pixels import load_masking_policy, tesseract_available

    if not tesseract_available(load_masking_policy(suite[0].config.policies_dir)):
        pytest.skip("apt-get install tesseract-ocr")
    archive, _scp = suite
    add_user(archive, "bob", ["personnel"])
    archive.start()
    series = make_ct_series(4, patient="WITH^DRAWN", patient_id="PIDWITHDRAW")
    payloads = [*(to_bytes(ds) for ds in series), _unknown_us()]
    _send(archive, write_files(tmp_path / "in", payloads))
    case_id = wait_for_cases(archive, 1)[0]
    listed = archive.cli("quarantine", "list", "--json")
    (item,) = json.loads(listed.stdout)
    masked = archive.cli(
        "quarantine", "mask", item["id"], "--region", "0,0,640,108", "--region",
        "0,345,640,135", "--image-area", "0,108,640,237", "--json",
    )  # fmt: skip
    assert json.loads(masked.stdout)["ocr_clean"], masked.stdout
    _restart(archive)

    with HealthPoller(archive) as health, Background(archive, tmp_path / "busy") as busy:
        released = archive.cli("quarantine", "release", item["id"], "--reviewer", "bob")
        with client(archive, "pat") as http:
            withdrawn = http.post("/teaching/closure/withdrawals", json={"cases": [case_id]})
        # The released instance and the busy series are catalogued under the poll too;
        # the withdrawn case is not available any more.
        wait_for_cases(archive, 2)
    busy.check()
    health.check()
    assert released.returncode == 0, released.stderr
    assert withdrawn.status_code == 200, withdrawn.text
    (result,) = withdrawn.json()["withdrawn"]
    assert result["deleted"] and result["files"] >= 4
    counts = archive.counts()
    assert counts["instances"] == 1 + 20, counts

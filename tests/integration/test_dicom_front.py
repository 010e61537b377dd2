"""The archive's DICOM front (issue #20) against a real archive: who may retrieve what to
where, malformed data, and the audit of every DICOM act.

Peers are real: dcmtk (storescp as workstations, a source and a recipient listening on
their registered ports; movescu, getscu, findscu, echoscu) and pynetdicom SCUs where a
test must read the exact DIMSE status or send raw bytes no toolkit would write.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, _config
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from archive import db
from archive.catalogue import Catalogue
from archive.dicom.casefields import patch_dataset
from archive.dicom.forward import part10
from archive.governance import PullInventory
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, base_env, new_archive, register_node
from tests.integration.test_pulls import StoreSCP, wait_for_cases
from tests.malformed import good_ct, huge_length, nested, small_header

SRC, WS1, WS2, RECIP = "SRC_PACS", "WS01", "WS02", "RECIP_NODE"
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("front")
    archive = new_archive(root / "home")
    scps = {name: StoreSCP(root / name, aet=aet) for name, aet in
            (("ws1", WS1), ("ws2", WS2), ("src", SRC), ("recip", RECIP))}  # fmt: skip
    try:
        register_node(archive, "pacs", SRC, port=scps["src"].port, store=True)
        for name, aet in (("ws1", WS1), ("ws2", WS2)):
            added = archive.cli(
                "workstations", "add", name, "--aet", aet, "--host", "127.0.0.1",
                "--port", str(scps[name].port), "--location", "Suite",
            )  # fmt: skip
            assert added.returncode == 0, added.stderr
        recipient = archive.cli(
            "recipients", "add", "Northern Trust Teaching Collection",
            "--kind", "trust_teaching_collection", "--contact", "Dr B Keeper",
            "--aet", RECIP, "--host", "127.0.0.1", "--port", str(scps["recip"].port),
        )  # fmt: skip
        assert recipient.returncode == 0, recipient.stderr
        archive.start()
        released = make_ct_series(3, patient="FRONT^ONE", patient_id="PIDFRONT1", seed=1)
        held = make_ct_series(2, patient="FRONT^TWO", patient_id="PIDFRONT2", seed=2)
        files = write_files(root / "in", [to_bytes(ds) for ds in released + held])
        sent = storescu(archive.dicom_port, archive.aet, SRC, files)
        assert sent.returncode == 0, sent.stderr
        cases = wait_for_cases(archive, 2)
        conn = db.connect(archive.config.home.db_path)
        try:
            catalogue = Catalogue(conn, archive.config.school_prefix)
            by_count = {catalogue.get(c).instance_count: catalogue.get(c) for c in cases}
            catalogue.set_status(by_count[2].case_id, "quarantined")  # no longer released
        finally:
            conn.close()
        for scp in scps.values():
            scp.clear()
        yield {"archive": archive, "scps": scps, "released": by_count[3],
               "unreleased": by_count[2], "root": root}  # fmt: skip
    finally:
        archive.stop()
        for scp in scps.values():
            scp.stop()


def _records(archive: RunningArchive, since: int = 0) -> list[dict]:
    time.sleep(0.3)  # the front's group commit
    shown = archive.cli("audit", "show", "--json", "--action", "access.dicom")
    assert shown.returncode == 0, shown.stderr
    return [r for r in json.loads(shown.stdout) if r["seq"] > since]


def _last_seq(archive: RunningArchive) -> int:
    records = _records(archive)
    return max((r["seq"] for r in records), default=0)


def _scu(aet: str, *contexts: str) -> AE:
    ae = AE(ae_title=aet)
    for context in contexts:
        ae.add_requested_context(context)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae


def _study(uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = uid
    return ds


def _read(data: bytes) -> Dataset:
    from io import BytesIO

    from pydicom import dcmread

    return dcmread(BytesIO(data))


def _move(archive: RunningArchive, calling: str, destination: str, uid: str) -> list[int]:
    ae = _scu(calling, StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
    assert assoc.is_established
    try:
        return [
            int(status.Status)
            for status, _ in assoc.send_c_move(
                _study(uid), destination, StudyRootQueryRetrieveInformationModelMove
            )
            if status is not None and "Status" in status
        ]
    finally:
        assoc.release()


def test_move_to_a_source_or_a_recipient_is_refused_and_nothing_leaves(world) -> None:
    archive, scps, case = world["archive"], world["scps"], world["released"]
    since = _last_seq(archive)
    for destination in (SRC, RECIP, "NOT_A_NODE"):
        statuses = _move(archive, WS1, destination, case.study_uid)
        assert statuses and statuses[-1] == 0xA801, (destination, statuses)
    # the reproduction from the issue, with dcmtk's movescu
    dcmtk = subprocess.run(
        ["movescu", "-aet", WS1, "-aec", archive.aet, "-aem", SRC, "-S",
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={case.study_uid}",
         "127.0.0.1", str(archive.dicom_port)],
        capture_output=True, text=True, env=base_env(), timeout=60, check=False,
    )  # fmt: skip
    assert "Success" not in dcmtk.stdout + dcmtk.stderr or "A801" in dcmtk.stderr
    time.sleep(0.5)
    for name in ("src", "recip", "ws1", "ws2"):
        assert scps[name].files() == [], name
    denied = [r for r in _records(archive, since) if r["detail"]["kind"] == "move"]
    assert len(denied) == 4 and all(r["outcome"] == "denied" for r in denied)
    assert all(r["actor"] == WS1 for r in denied)
    assert {r["detail"]["reason"] for r in denied} == {
        "C-MOVE destination is not a registered workstation"
    }


def test_move_to_another_workstation_is_refused_by_default_policy(world) -> None:
    archive, scps, case = world["archive"], world["scps"], world["released"]
    since = _last_seq(archive)
    assert _move(archive, WS1, WS2, case.study_uid)[-1] == 0xA801
    assert scps["ws2"].files() == []
    (record,) = [r for r in _records(archive, since) if r["detail"]["kind"] == "move"]
    assert record["outcome"] == "denied"
    assert "requesting workstation" in record["detail"]["reason"]


def test_move_to_itself_of_a_released_case_is_delivered_audited_and_inventoried(world) -> None:
    archive, scps, case = world["archive"], world["scps"], world["released"]
    since = _last_seq(archive)
    scps["ws1"].clear()
    statuses = _move(archive, WS1, WS1, case.study_uid)
    assert statuses[-1] == 0x0000
    assert 0xFF00 in statuses  # pending responses with counts
    assert len(scps["ws1"].files()) == 3
    # the stored (de-identified) datasets arrive as stored, but for the case ID and title
    # in the keys a viewer lists (archive/dicom/casefields.py, issue 23)
    stored = {str(d.SOPInstanceUID): d for d in map(_read, archive.stored_dicom())}
    for got in map(_read, scps["ws1"].files()):
        assert got == patch_dataset(stored[str(got.SOPInstanceUID)], case)
        assert got.PatientID == case.case_id
    (record,) = [r for r in _records(archive, since) if r["detail"]["kind"] == "move"]
    assert record["outcome"] == "success"
    assert record["detail"]["sent"] == 3 and record["detail"]["failed"] == 0
    assert record["detail"]["cases"] == case.case_id
    conn = db.connect(archive.config.home.db_path)
    try:
        pulls = PullInventory(conn).pulls(case.case_id)
    finally:
        conn.close()
    assert any(p["workstation"] == "ws1" and p["user"] == "workstation:ws1" for p in pulls)
    assert str(pulls[-1]["id"]) in record["detail"]["pulls"].split(",")


def test_move_of_an_unreleased_or_unknown_study_is_refused(world) -> None:
    archive, scps, unreleased = world["archive"], world["scps"], world["unreleased"]
    since = _last_seq(archive)
    scps["ws1"].clear()
    for uid in (unreleased.study_uid, "1.2.826.0.1.3680043.10.999.424242"):
        statuses = _move(archive, WS1, WS1, uid)
        assert statuses[-1] == 0x0000  # zero matches: zero sub-operations
    assert scps["ws1"].files() == []
    refused = [r for r in _records(archive, since) if r["detail"]["kind"] == "move"]
    assert len(refused) == 2 and all(r["outcome"] == "denied" for r in refused)
    assert all("not a released" in r["detail"]["reason"] for r in refused)


def test_get_of_a_released_case_is_delivered_audited_and_inventoried(world, tmp_path) -> None:
    archive, case = world["archive"], world["released"]
    since = _last_seq(archive)
    out = tmp_path / "got"
    out.mkdir()
    got = subprocess.run(
        ["getscu", "-aet", WS1, "-aec", archive.aet, "-S", "--output-directory", str(out),
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={case.study_uid}",
         "127.0.0.1", str(archive.dicom_port)],
        capture_output=True, text=True, env=base_env(), timeout=120, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert len(list(out.iterdir())) == 3
    (record,) = [r for r in _records(archive, since) if r["detail"]["kind"] == "get"]
    assert record["outcome"] == "success" and record["detail"]["sent"] == 3
    conn = db.connect(archive.config.home.db_path)
    try:
        pulls = PullInventory(conn).pulls(case.case_id)
    finally:
        conn.close()
    assert str(pulls[-1]["id"]) in record["detail"]["pulls"].split(",")
    assert pulls[-1]["user"] == "workstation:ws1"

    # a source may not retrieve at all
    ae = _scu(SRC, StudyRootQueryRetrieveInformationModelGet)
    assoc = ae.associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
    try:
        answers = list(assoc.send_c_get(_study(case.study_uid),
                                        StudyRootQueryRetrieveInformationModelGet))  # fmt: skip
    finally:
        assoc.release()
    assert int(answers[-1][0].Status) != 0x0000


def _store_raw(archive: RunningArchive, dataset: bytes, path: Path, sop_uid: str) -> int:
    """C-STORE these dataset bytes as they are (pynetdicom streams them from a file
    without parsing); returns the DIMSE status, failing the test on a timeout."""
    path.write_bytes(part10(dataset, CT, sop_uid, EXPLICIT_LE, SRC))
    ae = _scu(SRC)
    ae.add_requested_context(CT, EXPLICIT_LE)
    assoc = ae.associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
    assert assoc.is_established
    chunked = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        status = assoc.send_c_store(path)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = chunked
        if assoc.is_established:
            assoc.release()
    assert status is not None and "Status" in status, "no DIMSE status: the sender timed out"
    return int(status.Status)


def test_malformed_stores_get_a_failure_status_and_the_archive_stays_up(world, tmp_path) -> None:
    archive = world["archive"]
    since = _last_seq(archive)
    before = archive.counts()["instances"]
    uid = "1.2.826.0.1.3680043.10.999.77."
    cases = {
        "nested 20000": nested(20_000),
        "empty": b"",
        "garbage": b"\x8a\x13garbage, not DICOM at all" * 40,
        "truncated": good_ct()[1][:-1001],
        "length 0xFFFFFFF0": huge_length(),
        "truncated header": small_header()[:-5],
    }
    for number, (name, data) in enumerate(cases.items()):
        started = time.monotonic()
        status = _store_raw(archive, data, tmp_path / f"{number}.dcm", f"{uid}{number}")
        assert status in (0xC000, 0xA900), (name, hex(status))
        assert time.monotonic() - started < 25, f"{name}: answered only at a timeout"
    assert archive.health() is not None
    assert archive.counts()["instances"] == before
    ds, data = good_ct()
    assert _store_raw(archive, data, tmp_path / "good.dcm", str(ds.SOPInstanceUID)) == 0x0000
    assert archive.counts()["instances"] == before + 1
    records = [r for r in _records(archive, since) if r["detail"]["kind"] == "store"]
    failures = [r for r in records if r["outcome"] == "failure"]
    assert len(failures) == len(cases)
    assert any("nested deeper than 32" in r["detail"]["reason"] for r in failures)
    assert [r["outcome"] for r in records].count("success") == 1
    rejects = json.dumps(records)
    assert str(ds.PatientName) not in rejects and str(ds.PatientID) not in rejects


def test_echo_and_find_are_audited_and_find_answers_released_cases_only(world) -> None:
    archive, released = world["archive"], world["released"]
    since = _last_seq(archive)
    echo = subprocess.run(
        ["echoscu", "-aet", WS1, "-aec", archive.aet, "127.0.0.1", str(archive.dicom_port)],
        capture_output=True, text=True, env=base_env(), timeout=60, check=False,
    )  # fmt: skip
    assert echo.returncode == 0, echo.stderr
    ae = _scu(WS1, StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
    query = _study("")
    query.ModalitiesInStudy = ""
    query.NumberOfStudyRelatedInstances = ""
    try:
        answers = [
            ds
            for status, ds in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
            if status is not None and int(status.Status) == 0xFF00
        ]
    finally:
        assoc.release()
    found_uids = [a.StudyInstanceUID for a in answers]
    assert released.study_uid in found_uids
    assert world["unreleased"].study_uid not in found_uids  # quarantined: not answered
    conn = db.connect(archive.config.home.db_path)
    try:
        catalogue = Catalogue(conn, archive.config.school_prefix)
        assert all(catalogue.case_for_study(u).status == "available" for u in found_uids)
    finally:
        conn.close()
    mine = next(a for a in answers if a.StudyInstanceUID == released.study_uid)
    assert mine.NumberOfStudyRelatedInstances == 3
    found = subprocess.run(
        ["findscu", "-aet", WS1, "-aec", archive.aet, "-S", "-k", "QueryRetrieveLevel=SERIES",
         "-k", f"StudyInstanceUID={released.study_uid}", "-k", "SeriesInstanceUID",
         "127.0.0.1", str(archive.dicom_port)],
        capture_output=True, text=True, env=base_env(), timeout=60, check=False,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert released.series[0].series_uid in found.stdout + found.stderr
    records = _records(archive, since)
    kinds = [(r["detail"]["kind"], r["outcome"]) for r in records]
    assert kinds.count(("echo", "success")) == 1
    assert kinds.count(("find", "success")) == 2  # one per request, not per answer
    # a source may not query
    ae = _scu(SRC, StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
    try:
        answers = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
    assert all(int(s.Status) != 0xFF00 for s, _ in answers)
    assert ("find", "denied") in [
        (r["detail"]["kind"], r["outcome"]) for r in _records(archive, since)
    ]


def test_orthanc_has_no_dicom_server_of_its_own(world) -> None:
    archive = world["archive"]
    rendered = json.loads(archive.config.home.orthanc_config.read_text())
    assert rendered["DicomServerEnabled"] is False
    assert rendered["DicomModalities"] == {}  # Orthanc knows no node to send to
    since = _last_seq(archive)
    recipient = _scu(RECIP, CTImageStorage)  # a recipient's node only ever receives
    refused = recipient.associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
    assert refused.is_rejected
    (record,) = [r for r in _records(archive, since) if r["actor"] == RECIP]
    assert record["outcome"] == "denied" and "may not call" in record["detail"]["reason"]
    ae = _scu(WS1, CTImageStorage)
    assoc = ae.associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
    try:
        assert assoc.is_established  # the front answers on the configured DICOM port
    finally:
        assoc.release()


def _front_pids(archive: RunningArchive) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"archive.dicom.front" in argv and str(archive.home).encode() in argv:
            pids.append(int(proc.name))
    return pids


def test_serve_restarts_the_front_if_it_dies(world) -> None:
    import os
    import signal

    archive = world["archive"]
    (pid,) = _front_pids(archive)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    echo = None
    while time.monotonic() < deadline:
        pids = _front_pids(archive)
        if pids and pids != [pid]:
            echo = subprocess.run(
                ["echoscu", "-aet", WS1, "-aec", archive.aet, "127.0.0.1",
                 str(archive.dicom_port)],
                capture_output=True, text=True, env=base_env(), timeout=60, check=False,
            )  # fmt: skip
            if echo.returncode == 0:
                break
        time.sleep(0.5)
    assert echo is not None and echo.returncode == 0, "the DICOM front was not restarted"
    assert archive.health() is not None


def test_too_many_associations_are_rejected_and_audited(world) -> None:
    from pynetdicom.sop_class import Verification

    archive = world["archive"]
    since = _last_seq(archive)
    ae = _scu(WS1, Verification)
    ae.maximum_associations = 64
    limit = 16  # policies/access/dicom.toml [association] max_associations
    held, rejected = [], None
    try:
        for _ in range(limit + 1):
            assoc = ae.associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
            if not assoc.is_established:
                rejected = assoc
                break
            held.append(assoc)
    finally:
        for assoc in held:
            assoc.release()
    # pynetdicom counts the association being negotiated among the active ones
    assert rejected is not None and rejected.is_rejected
    assert limit - 1 <= len(held) <= limit
    refused = [r for r in _records(archive, since) if r["detail"]["kind"] == "associate"]
    assert [r["outcome"] for r in refused] == ["denied"]
    assert "too many associations" in refused[0]["detail"]["reason"]


def test_image_level_find_then_get_of_one_instance(world, tmp_path) -> None:
    archive, case = world["archive"], world["released"]
    series_uid = case.series[0].series_uid
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = case.study_uid
    query.SeriesInstanceUID = series_uid
    query.SOPInstanceUID = ""
    query.InstanceNumber = ""
    ae = _scu(WS1, StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
    try:
        sops = [
            str(ds.SOPInstanceUID)
            for status, ds in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
            if status is not None and int(status.Status) == 0xFF00
        ]
    finally:
        assoc.release()
    assert len(sops) == 3 and len(set(sops)) == 3
    since = _last_seq(archive)
    out = tmp_path / "one"
    out.mkdir()
    got = subprocess.run(
        ["getscu", "-aet", WS1, "-aec", archive.aet, "-S", "--output-directory", str(out),
         "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={case.study_uid}",
         "-k", f"SeriesInstanceUID={series_uid}", "-k", f"SOPInstanceUID={sops[1]}",
         "127.0.0.1", str(archive.dicom_port)],
        capture_output=True, text=True, env=base_env(), timeout=120, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert len(list(out.iterdir())) == 1
    (record,) = [r for r in _records(archive, since) if r["detail"]["kind"] == "get"]
    assert record["outcome"] == "success" and record["detail"]["sent"] == 1


def test_a_deeply_nested_identifier_is_refused_before_decoding(world) -> None:
    from pydicom.sequence import Sequence

    archive, case = world["archive"], world["released"]
    since = _last_seq(archive)
    identifier = _study(case.study_uid)
    inner = identifier
    for _ in range(100):  # deeper than max_sequence_depth (32)
        item = Dataset()
        inner.ReferencedStudySequence = Sequence([item])
        inner = item
    ae = _scu(WS1, StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
    try:
        statuses = [
            int(s.Status)
            for s, _ in assoc.send_c_move(
                identifier, WS1, StudyRootQueryRetrieveInformationModelMove
            )
            if s is not None and "Status" in s
        ]
    finally:
        assoc.release()
    assert statuses and statuses[-1] >= 0xA000
    records = [r for r in _records(archive, since) if r["detail"]["kind"] == "move"]
    assert records[-1]["outcome"] == "failure"
    assert "nested deeper than 32" in records[-1]["detail"]["reason"]
    assert archive.health() is not None


def test_the_front_follows_the_register_without_a_restart(world) -> None:
    archive = world["archive"]

    def echo() -> int:
        return subprocess.run(
            ["echoscu", "-aet", "WS03", "-aec", archive.aet, "127.0.0.1",
             str(archive.dicom_port)],
            capture_output=True, text=True, env=base_env(), timeout=60, check=False,
        ).returncode  # fmt: skip

    def eventually(expected: int) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if echo() == expected:
                return True
            time.sleep(0.3)
        return False

    assert echo() != 0
    added = archive.cli(
        "workstations", "add", "ws3", "--aet", "WS03", "--host", "127.0.0.1",
        "--port", "11199", "--location", "Suite",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert eventually(0), "a newly registered workstation was not admitted"
    removed = archive.cli("workstations", "remove", "ws3")
    assert removed.returncode == 0, removed.stderr
    assert eventually(1), "a removed workstation was still admitted"


def test_an_absurd_pdu_is_cut_off_before_it_is_buffered(world) -> None:
    import socket
    import struct

    archive = world["archive"]
    since = _last_seq(archive)
    with socket.create_connection(("127.0.0.1", archive.dicom_port), timeout=20) as peer:
        # an A-ASSOCIATE-RQ announcing 0xFFFFFFF0 bytes, from nobody registered
        peer.sendall(struct.pack(">BBL", 0x01, 0, 0xFFFFFFF0) + b"\0" * 4096)
        started = time.monotonic()
        closed = False
        try:
            while time.monotonic() - started < 15:
                if peer.recv(4096) == b"":
                    closed = True
                    break
        except OSError:
            closed = True
    assert closed, "the front kept reading an absurd PDU"
    records = [r for r in _records(archive, since) if r["detail"]["kind"] == "associate"]
    assert any("a PDU of 4096.0 MiB" in r["detail"]["reason"] for r in records)
    assert subprocess.run(
        ["echoscu", "-aet", WS1, "-aec", archive.aet, "127.0.0.1", str(archive.dicom_port)],
        capture_output=True, env=base_env(), timeout=60, check=False,
    ).returncode == 0  # fmt: skip


def test_a_message_over_the_size_limit_is_not_received(tmp_path) -> None:
    import shutil

    from archive.paths import POLICIES_DIR

    policies = tmp_path / "policies"
    shutil.copytree(POLICIES_DIR, policies)
    dicom = policies / "access" / "dicom.toml"
    dicom.write_text(
        dicom.read_text().replace("max_message_bytes = 1073741824", "max_message_bytes = 1048576")
    )
    archive = new_archive(tmp_path / "home")
    toml = archive.config.home.config_file
    text = toml.read_text()
    assert 'policies_dir = ""' in text
    toml.write_text(text.replace('policies_dir = ""', f'policies_dir = "{policies}"', 1))
    register_node(archive, "pacs", SRC, store=True)
    archive.start()
    try:
        since = _last_seq(archive)
        big = make_ct_series(1, rows=1024, columns=1024, seed=5)[0]  # 2 MiB of pixels
        small = make_ct_series(1, seed=6)[0]
        files = write_files(tmp_path / "in", [to_bytes(big), to_bytes(small)])
        refused = storescu(archive.dicom_port, archive.aet, SRC, files[:1])
        assert refused.returncode != 0 or "Success" not in refused.stdout + refused.stderr
        assert archive.counts()["instances"] == 0
        accepted = storescu(archive.dicom_port, archive.aet, SRC, files[1:])
        assert accepted.returncode == 0, accepted.stderr
        assert archive.counts()["instances"] == 1
        records = [r for r in _records(archive, since) if r["detail"]["kind"] == "store"]
        assert any("a message over 1.0 MiB" in r["detail"]["reason"] for r in records)
    finally:
        archive.stop()

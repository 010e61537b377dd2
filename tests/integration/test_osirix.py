"""OsiriX, Horos and Weasis as first-class clients (issue 23), against a real archive.

Peers act as the viewers do: a pynetdicom SCU as OsiriX (C-ECHO; C-FIND study, then
series, then image; C-MOVE to itself, received by the workstation's own storage SCP, here
dcmtk storescp on its registered port), a pynetdicom SCU as Horos/Weasis (C-GET on the same
association), and dcmtk findscu/movescu/getscu. What they must see: the case ID and title,
never the pseudonym; an edited title in the next C-FIND; every retrieve audited and in
the pull inventory, attributed to the trainer signed in at the workstation when there is
one; a move to any other AET refused; compressed transfer syntaxes stored and retrieved.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from archive import db
from archive.catalogue import Catalogue
from archive.governance import PullInventory
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import RunningArchive, add_user, base_env, new_archive, register_node
from tests.integration.test_pulls import StoreSCP, wait_for_cases

SRC, WS1, WS2 = "SRC_PACS", "MACLAB3", "MACLAB4"
TITLE = "Tension pneumothorax"


def _workstation(archive: RunningArchive, name: str, aet: str, port: int, where: str) -> None:
    added = archive.cli("workstations", "add", name, "--aet", aet, "--host", "127.0.0.1",
                        "--port", str(port), "--location", where)  # fmt: skip
    assert added.returncode == 0, added.stderr


def _password_file(archive: RunningArchive, root: Path, user: str) -> str:
    path = root / f"{user}.pw"
    path.write_text(archive.passwords[user])
    path.chmod(0o600)
    return str(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("osirix")
    archive = new_archive(root / "home")
    scps = {aet: StoreSCP(root / aet, aet=aet) for aet in (WS1, WS2)}
    try:
        register_node(archive, "pacs", SRC, store=True)
        _workstation(archive, "maclab3", WS1, scps[WS1].port, "MacLab 3")
        _workstation(archive, "maclab4", WS2, scps[WS2].port, "MacLab 4")
        add_user(archive, "tina", ["trainer"])
        add_user(archive, "una", ["trainer"], trained=False)
        archive.start()
        study = make_ct_series(3, patient="OSIRIX^PATIENT", patient_id="PIDOSX1", seed=21)
        files = write_files(root / "in", [to_bytes(ds) for ds in study])
        sent = storescu(archive.dicom_port, archive.aet, SRC, files)
        assert sent.returncode == 0, sent.stderr
        (case_id,) = wait_for_cases(archive, 1)
        password = _password_file(archive, root, "tina")
        edited = archive.cli("cases", "edit", case_id, "--title", TITLE, "--as", "tina",
                             "--password-file", password)  # fmt: skip
        assert edited.returncode == 0, edited.stderr
        yield {"archive": archive, "scps": scps, "case_id": case_id, "root": root,
               "password": password}  # fmt: skip
    finally:
        archive.stop()
        for scp in scps.values():
            scp.stop()


def _case(archive: RunningArchive, case_id: str):
    conn = db.connect(archive.config.home.db_path)
    try:
        return Catalogue(conn, archive.config.school_prefix).get(case_id)
    finally:
        conn.close()


def _pulls(archive: RunningArchive, case_id: str) -> list[dict]:
    conn = db.connect(archive.config.home.db_path)
    try:
        return PullInventory(conn).pulls(case_id)
    finally:
        conn.close()


def _records(archive: RunningArchive, since: int = 0) -> list[dict]:
    time.sleep(0.3)  # the front's group commit
    shown = archive.cli("audit", "show", "--json", "--action", "access.dicom")
    assert shown.returncode == 0, shown.stderr
    return [r for r in json.loads(shown.stdout) if r["seq"] > since]


def _last_seq(archive: RunningArchive) -> int:
    return max((r["seq"] for r in _records(archive)), default=0)


def _osirix(aet: str = WS1) -> AE:
    ae = AE(ae_title=aet)
    for context in (Verification, StudyRootQueryRetrieveInformationModelFind,
                    PatientRootQueryRetrieveInformationModelFind,
                    StudyRootQueryRetrieveInformationModelMove):  # fmt: skip
        ae.add_requested_context(context)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae


def _find(archive: RunningArchive, query: Dataset, model=StudyRootQueryRetrieveInformationModelFind,
          aet: str = WS1) -> list[Dataset]:  # fmt: skip
    assoc = _osirix(aet).associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
    assert assoc.is_established
    try:
        return [ds for status, ds in assoc.send_c_find(query, model)
                if status is not None and int(status.Status) == 0xFF00]  # fmt: skip
    finally:
        assoc.release()


def _query(level: str, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


STUDY_KEYS = dict(PatientName="", PatientID="", AccessionNumber="", StudyDescription="",
                  StudyInstanceUID="", ModalitiesInStudy="", BodyPartExamined="",
                  StudyDate="", NumberOfStudyRelatedInstances="")  # fmt: skip


def test_osirix_echo_then_find_study_series_image_shows_case_id_and_title(world) -> None:
    archive, case_id = world["archive"], world["case_id"]
    case = _case(archive, case_id)
    assoc = _osirix().associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
    assert int(assoc.send_c_echo().Status) == 0
    assoc.release()
    (study,) = _find(archive, _query("STUDY", **STUDY_KEYS))
    assert study.PatientID == case_id and str(study.PatientName) == case_id
    assert study.AccessionNumber == case_id
    assert study.StudyDescription == TITLE
    assert study.ModalitiesInStudy == "CT" and study.NumberOfStudyRelatedInstances == 3
    assert case.patient_pseudonym not in json.dumps(study.to_json_dict())
    series = _find(archive, _query("SERIES", StudyInstanceUID=study.StudyInstanceUID,
                                   SeriesInstanceUID="", Modality="", SeriesDescription="",
                                   NumberOfSeriesRelatedInstances="", PatientID=""))  # fmt: skip
    assert [(s.Modality, s.SeriesDescription, s.PatientID) for s in series] == [
        ("CT", "Axial 1mm", case_id)
    ]
    images = _find(archive, _query("IMAGE", StudyInstanceUID=study.StudyInstanceUID,
                                   SeriesInstanceUID=series[0].SeriesInstanceUID,
                                   SOPInstanceUID="", InstanceNumber=""))  # fmt: skip
    assert sorted(int(i.InstanceNumber) for i in images) == [1, 2, 3]
    # patient root (OsiriX's default model): one patient per case, named by its ID
    (patient,) = _find(archive, _query("PATIENT", PatientName="", PatientID=""),
                       PatientRootQueryRetrieveInformationModelFind)  # fmt: skip
    assert patient.PatientID == case_id


@pytest.mark.parametrize(
    ("keys", "found"),
    [
        ({"StudyDescription": "*PNEUMO*"}, True),  # viewers' text fields ignore case
        ({"StudyDescription": "*fracture*"}, False),
        ({"PatientID": "{lower}"}, True),
        ({"PatientName": "{prefix}*"}, True),
        ({"AccessionNumber": "{case}"}, True),
        ({"AccessionNumber": "XYZ*"}, False),
        ({"ModalitiesInStudy": "MR"}, False),
        ({"PatientID": "ANON*"}, False),  # the pseudonym is never shown nor matched
    ],
)
def test_find_matches_case_keys_with_wildcards(world, keys, found) -> None:
    archive, case_id = world["archive"], world["case_id"]
    prefix = case_id.split("-")[0]
    query = _query("STUDY", StudyInstanceUID="")
    for keyword, value in keys.items():
        value = value.replace("{case}", case_id).replace("{lower}", case_id.lower())
        setattr(query, keyword, value.replace("{prefix}", prefix))
    answers = _find(archive, query)
    assert bool(answers) is found, [a.PatientID for a in answers]


def test_an_edited_title_shows_in_the_next_find(world) -> None:
    archive, case_id = world["archive"], world["case_id"]
    new = "Tension pneumothorax, left, with mediastinal shift"
    edited = archive.cli("cases", "edit", case_id, "--title", new, "--as", "tina",
                         "--password-file", world["password"])  # fmt: skip
    assert edited.returncode == 0, edited.stderr
    try:
        (study,) = _find(archive, _query("STUDY", StudyDescription="", AccessionNumber=""))
        assert study.StudyDescription == new
        found = subprocess.run(
            ["findscu", "-aet", WS1, "-aec", archive.aet, "-S", "-k", "QueryRetrieveLevel=STUDY",
             "-k", f"AccessionNumber={case_id}", "-k", "StudyDescription", "-k", "PatientID",
             "127.0.0.1", str(archive.dicom_port)],
            capture_output=True, text=True, env=base_env(), timeout=60, check=False,
        )  # fmt: skip
        assert found.returncode == 0, found.stderr
        assert new in found.stdout + found.stderr and case_id in found.stdout + found.stderr
    finally:
        archive.cli("cases", "edit", case_id, "--title", TITLE, "--as", "tina",
                    "--password-file", world["password"])  # fmt: skip


def _move(archive: RunningArchive, destination: str, uid: str, aet: str = WS1) -> list[Dataset]:
    assoc = _osirix(aet).associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
    assert assoc.is_established
    try:
        return [status for status, _ in assoc.send_c_move(
            _query("STUDY", StudyInstanceUID=uid), destination,
            StudyRootQueryRetrieveInformationModelMove) if status is not None]  # fmt: skip
    finally:
        assoc.release()


def _received(scp: StoreSCP) -> list[Dataset]:
    return [dcmread(BytesIO(b)) for b in scp.files()]


def _session(archive: RunningArchive, world, *args: str):
    return archive.cli("workstations", "session", *args, "--as", "tina", "--password-file",
                       world["password"], "--json")  # fmt: skip


def test_osirix_move_to_itself_carries_the_case_id_and_is_an_unattended_pull(world) -> None:
    archive, scps, case_id = world["archive"], world["scps"], world["case_id"]
    case = _case(archive, case_id)
    scps[WS1].clear()
    since = _last_seq(archive)
    statuses = _move(archive, WS1, case.study_uid)
    assert int(statuses[-1].Status) == 0
    received = _received(scps[WS1])
    assert len(received) == 3
    for ds in received:  # what OsiriX's local database lists for the pulled study
        assert (ds.PatientID, str(ds.PatientName), ds.AccessionNumber) == (case_id,) * 3
        assert ds.StudyDescription == TITLE
    (record,) = [r for r in _records(archive, since) if r["detail"]["kind"] == "move"]
    assert record["outcome"] == "success" and record["actor"] == WS1
    assert record["detail"]["attributed"] == "unattended"
    assert record["detail"]["pull_user"] == "workstation:maclab3"
    assert _pulls(archive, case_id)[-1]["user"] == "workstation:maclab3"


def _horos_get(
    archive: RunningArchive, uid: str, aet: str = WS1, syntaxes: tuple[str, ...] = ()
) -> tuple[list, list[Dataset]]:
    """Horos/Weasis: C-GET on one association, storing what comes back on it (one CT
    storage context per transfer syntax in `syntaxes`, then the uncompressed ones)."""
    from pynetdicom import evt

    got: list[Dataset] = []

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        got.append(ds)
        return 0x0000

    ae = AE(ae_title=aet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for syntax in syntaxes:
        ae.add_requested_context(CTImageStorage, [syntax])
    ae.add_requested_context(CTImageStorage)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet,
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])  # fmt: skip
    assert assoc.is_established
    try:
        statuses = [s for s, _ in assoc.send_c_get(_query("STUDY", StudyInstanceUID=uid),
                                                    StudyRootQueryRetrieveInformationModelGet)
                    if s is not None]  # fmt: skip
    finally:
        assoc.release()
    return statuses, got


def test_a_signed_in_trainer_owns_the_workstation_retrieves_until_sign_out(world) -> None:
    archive, scps, case_id = world["archive"], world["scps"], world["case_id"]
    case = _case(archive, case_id)
    started = _session(archive, world, "start", "maclab3")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["user"] == "tina"
    try:
        since = _last_seq(archive)
        # Horos / Weasis: C-GET
        statuses, got = _horos_get(archive, case.study_uid)
        assert int(statuses[-1].Status) == 0 and len(got) == 3
        assert {d.StudyDescription for d in got} == {TITLE}
        # dcmtk getscu and movescu from the same workstation
        out = world["root"] / "getscu"
        out.mkdir(exist_ok=True)
        dcmtk = subprocess.run(
            ["getscu", "-aet", WS1, "-aec", archive.aet, "-S", "--output-directory", str(out),
             "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={case.study_uid}",
             "127.0.0.1", str(archive.dicom_port)],
            capture_output=True, text=True, env=base_env(), timeout=120, check=False,
        )  # fmt: skip
        assert dcmtk.returncode == 0, dcmtk.stderr
        assert len(list(out.iterdir())) == 3
        scps[WS1].clear()
        moved = subprocess.run(
            ["movescu", "-aet", WS1, "-aec", archive.aet, "-aem", WS1, "-S",
             "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={case.study_uid}",
             "127.0.0.1", str(archive.dicom_port)],
            capture_output=True, text=True, env=base_env(), timeout=120, check=False,
        )  # fmt: skip
        assert moved.returncode == 0, moved.stderr
        assert len(scps[WS1].files()) == 3
        retrieves = [r for r in _records(archive, since) if r["detail"]["kind"] in ("get", "move")]
        assert [r["detail"]["kind"] for r in retrieves] == ["get", "get", "move"]
        for record in retrieves:
            assert record["outcome"] == "success" and record["actor"] == "tina"
            assert record["roles"] == ["trainer"]
            assert record["detail"]["attributed"] == "session"
            assert record["source"].startswith(f"{WS1}@")
        pulls = _pulls(archive, case_id)[-3:]
        assert [(p["user"], p["workstation"]) for p in pulls] == [("tina", "maclab3")] * 3
        for record, pull in zip(retrieves, pulls, strict=True):
            assert record["detail"]["pulls"] == str(pull["id"])
        # a move to any other AET is refused, signed in or not
        for destination in (WS2, SRC, "ELSEWHERE"):
            statuses = _move(archive, destination, case.study_uid)
            assert int(statuses[-1].Status) == 0xA801, destination
        assert scps[WS2].files() == []
    finally:
        ended = _session(archive, world, "end", "maclab3")
        assert ended.returncode == 0, ended.stderr
    since = _last_seq(archive)
    statuses, got = _horos_get(archive, case.study_uid)
    assert int(statuses[-1].Status) == 0
    (record,) = [r for r in _records(archive, since) if r["detail"]["kind"] == "get"]
    assert record["actor"] == WS1 and record["detail"]["attributed"] == "unattended"


def test_sessions_are_for_trained_people_at_registered_workstations(world) -> None:
    archive = world["archive"]
    una = _password_file(archive, world["root"], "una")
    refused = archive.cli("workstations", "session", "start", "maclab3", "--as", "una",
                          "--password-file", una)  # fmt: skip
    assert refused.returncode != 0 and "training" in refused.stderr
    unknown = _session(archive, world, "start", "pacs")
    assert unknown.returncode != 0 and "not a registered suite workstation" in unknown.stderr
    listed = _session(archive, world, "list")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_without_a_session_the_policy_may_refuse_the_workstation(tmp_path) -> None:
    from archive.paths import POLICIES_DIR

    policies = tmp_path / "policies"
    shutil.copytree(POLICIES_DIR, policies)
    dicom = policies / "access" / "dicom.toml"
    text = dicom.read_text()
    assert "unattended_retrieve = true" in text
    dicom.write_text(text.replace("unattended_retrieve = true", "unattended_retrieve = false"))
    archive = new_archive(tmp_path / "home")
    toml = archive.config.home.config_file
    toml.write_text(
        toml.read_text().replace('policies_dir = ""', f'policies_dir = "{policies}"', 1)
    )
    scp = StoreSCP(tmp_path / "ws", aet=WS1)
    try:
        register_node(archive, "pacs", SRC, store=True)
        _workstation(archive, "maclab3", WS1, scp.port, "MacLab 3")
        add_user(archive, "tina", ["trainer"])
        archive.start()
        files = write_files(tmp_path / "in", [to_bytes(d) for d in make_ct_series(2, seed=31)])
        assert storescu(archive.dicom_port, archive.aet, SRC, files).returncode == 0
        (case_id,) = wait_for_cases(archive, 1)
        uid = _case(archive, case_id).study_uid
        since = _last_seq(archive)
        statuses = _move(archive, WS1, uid)
        assert int(statuses[-1].Status) == 0xC001
        assert "sign in" in statuses[-1].ErrorComment
        assert scp.files() == []
        (record,) = [r for r in _records(archive, since) if r["detail"]["kind"] == "move"]
        assert record["outcome"] == "denied" and record["detail"]["attributed"] == "refused"
        world = {"password": _password_file(archive, tmp_path, "tina")}
        assert _session(archive, world, "start", "maclab3").returncode == 0
        assert int(_move(archive, WS1, uid)[-1].Status) == 0
        assert len(scp.files()) == 2
        assert _pulls(archive, case_id)[-1]["user"] == "tina"
    finally:
        archive.stop()
        scp.stop()


# -- compressed transfer syntaxes ---------------------------------------------------------
def _compressed(directory: Path) -> dict[str, tuple[Path, str, str]]:
    """{name: (file, storescu flag, transfer syntax)}: each a one-slice study of its own."""
    import numpy as np
    from pydicom.uid import JPEG2000, JPEG2000Lossless

    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str, str]] = {}

    def one(seed: int, eight_bit: bool = False) -> Dataset:
        ds = make_ct_series(1, patient=f"CODEC^{seed}", patient_id=f"PIDC{seed}", seed=seed)[0]
        if eight_bit:
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
            rng = np.random.default_rng(seed)
            ds.PixelData = rng.integers(0, 255, 64 * 64, dtype=np.uint8).tobytes()
        return ds

    for name, seed, syntax, flag in (("j2k-lossless", 41, JPEG2000Lossless, "-xv"),
                                      ("j2k", 42, JPEG2000, "-xw")):  # fmt: skip
        ds = one(seed)
        kwargs = {} if syntax == JPEG2000Lossless else {"j2k_cr": [5]}
        ds.compress(syntax, **kwargs)
        path = directory / f"{name}.dcm"
        path.write_bytes(to_bytes(ds))
        out[name] = (path, flag, str(syntax))
    for name, seed, tool, args, flag, syntax, eight in (
        ("jpeg-ls", 43, "dcmcjpls", [], "-xt", "1.2.840.10008.1.2.4.80", False),
        ("rle", 44, "dcmcrle", [], "-xr", "1.2.840.10008.1.2.5", False),
        ("jpeg-lossless", 45, "dcmcjpeg", [], "-xs", "1.2.840.10008.1.2.4.70", False),
        ("jpeg-baseline", 46, "dcmcjpeg", ["+eb"], "-xy", "1.2.840.10008.1.2.4.50", True),
        ("jpeg-extended", 47, "dcmcjpeg", ["+ee"], "-xx", "1.2.840.10008.1.2.4.51", False),
    ):
        plain = directory / f"{name}-plain.dcm"
        plain.write_bytes(to_bytes(one(seed, eight)))
        path = directory / f"{name}.dcm"
        subprocess.run([tool, *args, str(plain), str(path)], check=True, env=base_env())
        out[name] = (path, flag, syntax)
    return out


def test_compressed_syntaxes_are_stored_and_retrieved(world) -> None:
    archive, scps = world["archive"], world["scps"]
    files = _compressed(world["root"] / "codecs")
    before = archive.counts()["instances"]
    for name, (path, flag, _syntax) in files.items():
        sent = subprocess.run(
            ["storescu", flag, "-aec", archive.aet, "-aet", SRC, "127.0.0.1",
             str(archive.dicom_port), str(path)],
            capture_output=True, text=True, env=base_env(), timeout=120, check=False,
        )  # fmt: skip
        assert sent.returncode == 0, (name, sent.stderr)
    cases = wait_for_cases(archive, 1 + len(files))
    assert archive.counts()["instances"] == before + len(files)
    by_syntax = {}
    conn = db.connect(archive.config.home.db_path)
    try:
        catalogue = Catalogue(conn, archive.config.school_prefix)
        for case_id in cases:
            case = catalogue.get(case_id)
            rows = conn.execute(
                "SELECT transfer_syntax FROM vault_instances WHERE study_uid = ?",
                (case.study_uid,),
            ).fetchall()
            for row in rows:
                by_syntax[row[0]] = case
    finally:
        conn.close()
    for name, (_path, _flag, syntax) in files.items():
        assert syntax in by_syntax, f"{name}: stored as {sorted(by_syntax)}"
    # a viewer that accepts the stored syntax gets it as stored (pynetdicom C-GET
    # proposing every syntax); storescp (uncompressed only) gets decompressed pixels
    j2k = by_syntax[files["j2k-lossless"][2]]
    stored = files["j2k-lossless"][2]
    statuses, got = _horos_get(archive, j2k.study_uid, syntaxes=(stored,))
    assert int(statuses[-1].Status) == 0 and len(got) == 1
    assert got[0].file_meta.TransferSyntaxUID == stored
    scps[WS1].clear()
    assert int(_move(archive, WS1, j2k.study_uid)[-1].Status) == 0
    (moved,) = _received(scps[WS1])
    assert moved.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
    assert moved.PatientID == j2k.case_id


def test_patient_root_get_by_case_id(world) -> None:
    """A patient-root C-GET at patient level, by the case ID a viewer lists as PatientID."""
    from pynetdicom import evt
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelGet as Model

    archive, case_id = world["archive"], world["case_id"]
    got: list[Dataset] = []
    ae = AE(ae_title=WS1)
    ae.add_requested_context(Model)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet,
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE,
                                        lambda e: got.append(e.dataset) or 0x0000)])  # fmt: skip
    try:
        # the case: its images; an unknown case: nothing (success, zero sub-operations);
        # a wildcard: refused (a retrieve names what it takes)
        for wanted, count, ok in ((case_id, 3, True), ("NSR-1999-99999", 0, True),
                                  ("NSR*", 0, False)):  # fmt: skip
            got.clear()
            statuses = [s for s, _ in assoc.send_c_get(_query("PATIENT", PatientID=wanted), Model)
                        if s is not None]  # fmt: skip
            assert len(got) == count, wanted
            assert (int(statuses[-1].Status) == 0) is ok, wanted
            if count:
                assert {d.PatientID for d in got} == {case_id}
    finally:
        assoc.release()


def test_i_am_at_maclab_3_in_a_real_browser(world) -> None:
    """The web page: a trainer signs in at MacLab 3 in headless Chromium, the
    workstation's C-GET is then hers, and "I have left" ends it."""
    web = pytest.importorskip("tests.integration.test_web")
    if not (web.CHROMIUM.exists() and web.DRIVER.exists()):
        pytest.skip("Debian's chromium is not installed")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    archive, case_id = world["archive"], world["case_id"]
    profile = tempfile.mkdtemp(prefix="chromium-")
    options = web.webdriver.ChromeOptions()
    options.binary_location = str(web.CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(arg)
    driver = web.webdriver.Chrome(options=options,
                                  service=web.webdriver.ChromeService(str(web.DRIVER)))  # fmt: skip
    driver.set_page_load_timeout(60)
    try:
        web.login(driver, archive, "tina")
        driver.get(archive.url + "/teaching/ui/")
        web.click(driver, 'a[href="/teaching/ui/workstation"]')
        Select(driver.find_element(By.ID, "workstation")).select_by_visible_text(
            "MacLab 3 (maclab3)"
        )
        driver.find_element(By.ID, "minutes").send_keys("45")
        web.click(driver, "main form button[type=submit]")
        assert "You are at maclab3" in web.text(driver)
        web.shot(driver, "workstation-session")
        since = _last_seq(archive)
        statuses, got = _horos_get(archive, _case(archive, case_id).study_uid)
        assert int(statuses[-1].Status) == 0 and len(got) == 3
        (record,) = [r for r in _records(archive, since) if r["detail"]["kind"] == "get"]
        assert record["actor"] == "tina" and record["detail"]["attributed"] == "session"
        web.click(driver, 'form[action="/teaching/ui/workstation/end"] button')
        assert "Signed out of maclab3" in web.text(driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    listed = _session(archive, world, "list")
    assert json.loads(listed.stdout) == []

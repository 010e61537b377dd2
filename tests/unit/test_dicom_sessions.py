"""Workstation sessions (issue 23) and the case fields a viewer shows, without sockets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from archive.access import open_access_store
from archive.access.nodes import workstations
from archive.core import Refusal
from archive.dicom.casefields import accession_number, case_fields, lo, patch_dataset
from archive.dicom.sessions import SessionTable, ports_for, session_principal, sign_out, start
from archive.paths import POLICIES_DIR

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


@pytest.fixture
def world(tmp_path):
    store = open_access_store(tmp_path / "archive.db", POLICIES_DIR)
    store.add_user("alice", PASSWORD, ["trainer"], NOW, "op")
    store.record_training("alice", NOW.date(), NOW, "op")
    store.add_user("bob", PASSWORD, ["trainer"], NOW, "op")
    store.record_training("bob", NOW.date(), NOW, "op")
    store.add_user("carol", PASSWORD, ["trainer"], NOW, "op")  # not trained
    store.add_user("pat", PASSWORD, ["personnel"], NOW, "op")
    for name, aet in (("ws1", "WS01"), ("ws2", "WS02")):
        workstations(store.conn).add(name, aet, "127.0.0.1", 11112, f"MacLab {name[-1]}", "op", NOW)
    store.add_dicom_node("pacs", "PACS", "127.0.0.1", 104, may_store=True, may_query=False)
    events: list = []
    clock = {"now": NOW}
    ports = ports_for(store.conn, events.append, POLICIES_DIR, "test", lambda: clock["now"])
    return SimpleNamespace(store=store, ports=ports, events=events, clock=clock)


def _p(world, name):
    return world.store.local_principal(name, world.clock["now"])


def test_sign_in_attributes_the_workstation_until_sign_out(world) -> None:
    made = start(world.ports, world.store, _p(world, "alice"), "ws1")
    assert not isinstance(made, Refusal), made
    table = SessionTable(world.store.conn)
    assert table.active("ws1", NOW).user == "alice"
    assert made.expires_at == NOW + timedelta(minutes=240)  # dicom.toml length_minutes
    assert session_principal(world.store, made, NOW).user == "alice"
    assert table.active("ws2", NOW) is None
    # another trainer may not sign alice out; personnel may
    refused = sign_out(world.ports, _p(world, "bob"), "ws1")
    assert isinstance(refused, Refusal) and "owner" in refused.reason
    ended = sign_out(world.ports, _p(world, "alice"), "ws1")
    assert not isinstance(ended, Refusal) and ended.ended_at == NOW
    assert table.active("ws1", NOW) is None
    nothing = sign_out(world.ports, _p(world, "pat"), "ws1")
    assert isinstance(nothing, Refusal) and nothing.code == "not_found"
    outcomes = [(e.action, e.outcome, e.actor) for e in world.events]
    assert outcomes == [
        ("workstation.sign_in", "success", "alice"),
        ("workstation.sign_out", "denied", "bob"),
        ("workstation.sign_out", "success", "alice"),
        ("workstation.sign_out", "denied", "pat"),
    ]


def test_one_person_per_workstation_and_one_workstation_per_person(world) -> None:
    table = SessionTable(world.store.conn)
    start(world.ports, world.store, _p(world, "alice"), "ws1")
    start(world.ports, world.store, _p(world, "bob"), "ws1")  # bob sat down at ws1
    assert table.active("ws1", NOW).user == "bob"
    start(world.ports, world.store, _p(world, "bob"), "ws2")  # and moved on to ws2
    assert table.active("ws1", NOW) is None
    assert table.active("ws2", NOW).user == "bob"
    personnel = sign_out(world.ports, _p(world, "pat"), "ws2")
    assert not isinstance(personnel, Refusal)


def test_refusals_untrained_unknown_source_and_length(world) -> None:
    untrained = start(world.ports, world.store, _p(world, "carol"), "ws1")
    assert isinstance(untrained, Refusal) and untrained.code == "training"
    for name in ("nope", "pacs"):  # unknown, or a source (not a suite workstation)
        refused = start(world.ports, world.store, _p(world, "alice"), name)
        assert isinstance(refused, Refusal) and refused.code == "not_found", name
    too_long = start(world.ports, world.store, _p(world, "alice"), "ws1", minutes=721)
    assert isinstance(too_long, Refusal) and "720" in too_long.reason
    bad = start(world.ports, world.store, _p(world, "alice"), "ws1", minutes=0)
    assert isinstance(bad, Refusal) and bad.code == "invalid"
    assert SessionTable(world.store.conn).all_active(NOW) == []
    assert all(e.outcome == "denied" for e in world.events)


def test_a_session_lapses_with_time_and_with_an_account_change(world) -> None:
    made = start(world.ports, world.store, _p(world, "alice"), "ws1", minutes=30)
    table = SessionTable(world.store.conn)
    assert table.active("ws1", NOW + timedelta(minutes=29)) is not None
    assert table.active("ws1", NOW + timedelta(minutes=30)) is None
    world.store.reset_password("alice", "another long password", NOW)
    assert session_principal(world.store, made, NOW) is None  # the epoch moved on


def test_case_fields_come_from_the_case_id_and_title_only() -> None:
    from pydicom.dataset import Dataset

    case = SimpleNamespace(
        case_id="NSR-2026-00042", title="Tension pneumothorax – left\\ café",
        study_description="CT CHEST",
    )  # fmt: skip
    fields = case_fields(case)
    assert fields == {
        "PatientID": "NSR-2026-00042",
        "PatientName": "NSR-2026-00042",
        "AccessionNumber": "NSR-2026-00042",
        "StudyDescription": "Tension pneumothorax - left  cafe",
    }
    assert accession_number("ABCDEFGH-2026-00042") == "BCDEFGH202600042"
    assert len(lo("x" * 100)) == 64
    untitled = SimpleNamespace(case_id="NSR-2026-00001", title="", study_description="CT HEAD")
    assert case_fields(untitled)["StudyDescription"] == "CT HEAD"
    ds = Dataset()
    ds.PatientID, ds.PatientName, ds.StudyDescription = "ANON4XI7", "ANON4XI7", "CT"
    patch_dataset(ds, case)
    assert ds.PatientID == "NSR-2026-00042" and ds.AccessionNumber == "NSR-2026-00042"
    assert str(ds.PatientName) == "NSR-2026-00042"


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "RLE"])
def test_prepared_bytes_differ_from_the_stored_file_only_by_the_case_keys(syntax) -> None:
    from io import BytesIO

    from pydicom import dcmread
    from pydicom.filereader import read_dataset
    from pydicom.uid import RLELossless

    from archive.dicom.send import prepared_dataset, split_file
    from tests.corpus import make_ct_series, to_bytes

    ds = make_ct_series(1, vendor_header=True, seed=3)[0]
    if syntax == "RLE":
        ds.compress(RLELossless)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    data = to_bytes(ds)
    case = SimpleNamespace(case_id="NSR-2026-00009", title="Pneumothorax", study_description="")
    sent_syntax, body = prepared_dataset(data, case_fields(case))
    assert sent_syntax == split_file(data)[1]
    implicit = sent_syntax == "1.2.840.10008.1.2"
    sent = read_dataset(BytesIO(body), implicit, True)
    assert sent == patch_dataset(dcmread(BytesIO(data)), case)
    assert body.endswith(data[-4096:])  # the pixel data travels as stored
    big = make_ct_series(1, seed=4)[0]
    big.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.2"
    assert prepared_dataset(to_bytes(big), case_fields(case)) is None


def test_the_workstation_role_is_no_persons_role(tmp_path) -> None:
    """suite_workstation (an unattended workstation's retrieves) is a device of the
    action policy: pull.create names it, the account store refuses it for a person."""
    from archive.access import ROLES, AccessError
    from archive.access.principal import Principal
    from archive.core import authorise, load_action_policy
    from archive.core.authorise import Resource

    policy = load_action_policy(POLICIES_DIR)
    assert "suite_workstation" in policy.devices and "suite_workstation" not in ROLES
    robot = Principal("workstation:ws1", ("suite_workstation",), True, method="dicom")
    assert authorise(policy, robot, "pull.create", Resource("case", "X", "available"))
    assert not authorise(policy, robot, "pull.create", Resource("case", "X", "quarantined"))
    assert not authorise(policy, robot, "case.edit")
    store = open_access_store(tmp_path / "a.db", POLICIES_DIR)
    with pytest.raises(AccessError):
        store.add_user("robot", PASSWORD, ["suite_workstation"], NOW, "op")

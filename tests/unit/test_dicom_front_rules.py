"""The DICOM front's rules without sockets: its policy file, the retrieve rule, the
association rule, and the filter's acceptance of the front's forwarded C-STOREs."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.access.nodes import DicomNode
from archive.dicom import forward
from archive.dicom.policy import (
    FrontPolicy,
    association_decision,
    load_front_policy,
    retrieve_decision,
)
from archive.errors import ConfigError
from archive.paths import POLICIES_DIR
from tests.fake_orthanc import FakeOrthanc

WS1 = DicomNode("ws1", "WS01", "127.0.0.1", 11112, False, True)
WS2 = DicomNode("ws2", "WS02", "10.0.0.22", 11112, False, True)
SRC = DicomNode("pacs", "PACS", "10.0.0.5", 104, True, False)
BOTH = DicomNode("odd", "ODD", "10.0.0.6", 104, True, True)
NODES = [WS1, WS2, SRC, BOTH]
PLACES = {"ws1", "ws2", "odd"}


def test_the_shipped_policy_loads_and_keeps_moves_to_the_requester() -> None:
    policy = load_front_policy(POLICIES_DIR)
    assert policy.scan.max_depth == 32
    assert policy.max_message_bytes == 1 << 30
    assert policy.move_to_other_workstations is False
    assert 1 <= policy.max_associations <= 256


def test_a_broken_policy_stops_the_front(tmp_path: Path) -> None:
    (tmp_path / "access").mkdir()
    with pytest.raises(ConfigError):
        load_front_policy(tmp_path)  # missing
    (tmp_path / "access" / "dicom.toml").write_text("[store]\nmax_sequence_depth = 0\n")
    with pytest.raises(ConfigError, match="max_sequence_depth"):
        load_front_policy(tmp_path)
    (tmp_path / "access" / "dicom.toml").write_text(
        '[retrieve]\nmove_to_other_workstations = "yes"\n'
    )
    with pytest.raises(ConfigError, match="true or false"):
        load_front_policy(tmp_path)


@pytest.mark.parametrize(
    ("requester", "destination", "others", "allowed", "why"),
    [
        (WS1, "WS01", False, True, "pull"),
        (WS1, "WS02", False, False, "requesting workstation"),
        (WS1, "WS02", True, True, "pull"),
        (WS1, "PACS", True, False, "not a registered workstation"),  # a source: never
        (WS1, "ODD", True, False, "not a registered workstation"),  # stores too: never
        (WS1, "RECIP", True, False, "not a registered workstation"),  # a recipient
        (SRC, "PACS", True, False, "requester is not"),
        (DicomNode("ws3", "WS03", "h", 1, False, True), "WS03", True, False, "requester"),
    ],
)
def test_retrieve_rule(requester, destination, others, allowed, why) -> None:
    policy = FrontPolicy(move_to_other_workstations=others)
    decision, node = retrieve_decision(policy, NODES, requester, destination, PLACES)
    assert decision.allowed is allowed
    assert why in decision.reason
    assert (node is not None) is allowed


def test_association_rule_checks_ae_and_host() -> None:
    assert association_decision(NODES, "WS01", "127.0.0.1").allowed
    assert "not registered" in association_decision(NODES, "NOPE", "127.0.0.1").reason
    assert "another host" in association_decision(NODES, "WS01", "10.9.9.9").reason
    recipient = DicomNode("recipient-1", "RECIP", "10.0.0.9", 104, False, False)
    refused = association_decision([*NODES, recipient], "RECIP", "10.0.0.9")
    assert not refused.allowed and "may not call" in refused.reason


def test_orthanc_answers_map_to_dimse_statuses() -> None:
    assert forward.status_of(200, {"Status": "Success"}).status == 0x0000
    assert forward.status_of(200, {"Status": "AlreadyStored"}).status == 0x0000
    assert forward.status_of(400, None).status == 0xC000
    assert forward.status_of(500, None).status == 0xA700
    assert forward.status_of(403, None).status == 0xA700


def test_part10_wraps_the_bytes_unchanged() -> None:
    data = b"\x08\x00\x16\x00UI\x02\x001\x00"
    blob = forward.part10(data, "1.2.3", "1.2.3.4", "1.2.840.10008.1.2.1", "SRC")
    assert blob[128:132] == b"DICM" and blob.endswith(data)


@pytest.fixture
def http_filter():
    from plugins import http_filter as plugin

    return plugin


class _Services:
    def __init__(self, tmp_path: Path) -> None:
        from archive import db
        from archive.access import AccessStore, load_route_policy

        self.route_policy = load_route_policy(POLICIES_DIR)
        self.store = AccessStore(db.connect(tmp_path / "a.db"))
        self.records: list = []

    def access_store(self):
        return self.store

    def record(self, event) -> int:
        self.records.append(event)
        return 0


def test_the_filter_admits_the_fronts_stores_only_from_loopback_with_the_secret(
    http_filter, tmp_path: Path
) -> None:
    from plugins.uploaders import take_dicom_front

    services = _Services(tmp_path)
    check = http_filter.make_filter(FakeOrthanc(), services, None, "s3cret-of-this-serve")
    good = {forward.FRONT_SECRET_HEADER: "s3cret-of-this-serve", forward.FRONT_AET_HEADER: "PACS"}
    assert check("/instances", method=2, ip="127.0.0.1", headers=good, get={}) is True
    assert take_dicom_front() == "PACS"  # ingest records it as a DICOM intake
    assert check("/instances", method=2, ip="10.0.0.9", headers=good, get={}) is False
    wrong = {**good, forward.FRONT_SECRET_HEADER: "guess"}
    assert check("/instances", method=2, ip="127.0.0.1", headers=wrong, get={}) is False
    assert take_dicom_front() is None
    # the secret opens nothing else
    assert check("/instances/x/file", method=1, ip="127.0.0.1", headers=good, get={}) is False
    assert check("/tools/find", method=2, ip="127.0.0.1", headers=good, get={}) is False
    no_secret = http_filter.make_filter(FakeOrthanc(), services, None, None)
    assert no_secret("/instances", method=2, ip="127.0.0.1", headers=good, get={}) is False

"""Pull inventory (issue 8) and workstation wipe attestations (issue 10)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from archive.db import connect
from archive.governance.errors import InvalidInputError
from archive.governance.pulls import PullInventory

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def inv(tmp_path):
    return PullInventory(connect(tmp_path / "archive.db"))


def test_inventory_groups_cases_by_workstation(inv):
    inv.record_pull("NSR-0002", "MACLAB-01", "dr.a", T0)
    inv.record_pull("NSR-0001", "MACLAB-01", "dr.a", T0 + timedelta(minutes=1))
    inv.record_pull("NSR-0001", "MACLAB-01", "dr.b", T0 + timedelta(minutes=2))
    inv.record_pull("NSR-0001", "MACLAB-07", "dr.b", T0 + timedelta(minutes=3))
    assert inv.inventory() == {"MACLAB-01": ["NSR-0001", "NSR-0002"], "MACLAB-07": ["NSR-0001"]}
    assert inv.cases_on_workstation("MACLAB-07") == ["NSR-0001"]
    assert inv.cases_on_workstation("MACLAB-99") == []
    assert inv.workstations_holding(["NSR-0002", "NSR-0404"]) == {"MACLAB-01": ["NSR-0002"]}
    assert [p["user"] for p in inv.pulls("NSR-0001")] == ["dr.a", "dr.b", "dr.b"]


def test_wipe_attestation_clears_earlier_pulls_only(inv):
    inv.record_pull("NSR-0001", "MACLAB-01", "dr.a", T0)
    inv.record_pull("NSR-0002", "MACLAB-02", "dr.a", T0)
    assert inv.workstations_needing_wipe() == ["MACLAB-01", "MACLAB-02"]
    a = inv.attest_wipe(
        "MACLAB-01",
        "J Smith (IT)",
        "nwipe DoD short + FileVault key destroyed",
        wiped_at=T0 + timedelta(hours=1),
        now=T0 + timedelta(hours=2),
    )
    assert a.workstation == "MACLAB-01" and a.attested_by == "J Smith (IT)"
    assert inv.inventory() == {"MACLAB-02": ["NSR-0002"]}
    assert inv.workstations_needing_wipe() == ["MACLAB-02"]
    inv.record_pull("NSR-0003", "MACLAB-01", "dr.a", T0 + timedelta(hours=3))
    assert inv.cases_on_workstation("MACLAB-01") == ["NSR-0003"]
    assert inv.latest_attestations()["MACLAB-01"] == a
    assert inv.attestations()[0].to_dict()["method"].startswith("nwipe")


def test_attestation_validation(inv):
    with pytest.raises(InvalidInputError, match="future"):
        inv.attest_wipe("WS", "who", "how", wiped_at=T0 + timedelta(days=1), now=T0)
    with pytest.raises(InvalidInputError, match="wipe method is required"):
        inv.attest_wipe("WS", "who", " ", wiped_at=T0, now=T0)
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        inv.record_pull("NSR-1", "WS", "u", datetime(2025, 1, 1))
    with pytest.raises(InvalidInputError, match="workstation is required"):
        inv.record_pull("NSR-1", "", "u", T0)

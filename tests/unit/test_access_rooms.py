"""The access room split by what it holds (issue 21): accounts, credentials, DICOM nodes
and one workstation registry that governance, the DICOM front and the web read."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from argon2 import PasswordHasher

from archive.access import (
    AccessError,
    AccessStore,
    Accounts,
    Credentials,
    DicomNodes,
    Principal,
    Workstations,
)
from archive.access.schema import AccessDb
from archive.db import connect
from archive.governance.errors import NotFoundError
from archive.governance.workstations import Workstations as GovernanceWorkstations

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
PW = "correct horse battery"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def test_each_store_stands_alone_on_one_connection(tmp_path) -> None:
    db = AccessDb(connect(tmp_path / "archive.db"))
    accounts = Accounts(db, hasher=CHEAP)
    credentials = Credentials(accounts)
    accounts.add_user("alice", PW, ["trainer"], T0, "boss")
    accounts.record_training("alice", date(2025, 2, 1), T0, "boss")
    assert isinstance(credentials.authenticate_basic("alice", PW, T0), Principal)
    nodes = DicomNodes(db)
    nodes.add_dicom_node("pacs", "PACS", "10.0.0.5", 104, may_store=True)
    assert [n.name for n in nodes.list_dicom_nodes()] == ["pacs"]


def test_a_write_ends_remembered_principals_and_a_reset_ends_the_cache(tmp_path) -> None:
    store = AccessStore(connect(tmp_path / "archive.db"), hasher=CHEAP)
    store.add_user("alice", PW, ["trainer"], T0, "boss")
    assert isinstance(store.authenticate_basic("alice", PW, T0), Principal)
    assert "alice" in store.credentials._cache
    store.reset_password("alice", "another good passphrase", T0)
    assert "alice" not in store.credentials._cache
    assert store.authenticate_basic("alice", PW, T0).reason == "bad_credentials"


def test_bind_shares_the_credential_cache(tmp_path) -> None:
    path = tmp_path / "archive.db"
    store = AccessStore(connect(path), hasher=CHEAP)
    store.add_user("alice", PW, ["trainer"], T0, "boss")
    other = store.bind(connect(path))
    assert other.conn is not store.conn
    assert isinstance(other.authenticate_basic("alice", PW, T0), Principal)
    assert other.credentials._cache is store.credentials._cache
    assert other.db.lock is store.db.lock


def test_one_workstation_registry_serves_governance(tmp_path) -> None:
    conn = connect(tmp_path / "archive.db")
    registry = Workstations(conn)
    registry.add("ws-01", "WS01", "10.0.0.21", 104, "MacLab 1", "boss", T0)
    node = {n.name: n for n in DicomNodes(conn).list_dicom_nodes()}["ws-01"]
    assert node.may_query and not node.may_store
    view = GovernanceWorkstations(conn)
    assert view.exists("ws-01") and view.get("ws-01").location == "MacLab 1"
    assert set(view.all()) == {"ws-01"}
    registry.remove("ws-01")
    assert not view.exists("ws-01") and DicomNodes(conn).list_dicom_nodes() == []
    with pytest.raises(NotFoundError):
        view.get("ws-01")


def test_a_query_node_without_a_place_is_no_workstation(tmp_path) -> None:
    conn = connect(tmp_path / "archive.db")
    DicomNodes(conn).add_dicom_node("viewer", "VIEW", "10.0.0.9", 104, may_query=True)
    assert not Workstations(conn).exists("viewer")
    with pytest.raises(AccessError, match="archive workstations list"):
        Workstations(conn).get("viewer")


def test_a_bad_place_loses_nothing(tmp_path) -> None:
    conn = connect(tmp_path / "archive.db")
    with pytest.raises(AccessError, match="location"):
        Workstations(conn).add("ws-01", "WS01", "10.0.0.21", 104, "  ", "boss", T0)
    assert DicomNodes(conn).list_dicom_nodes() == []


def test_places_of_an_older_home_are_adopted_once(tmp_path) -> None:
    conn = connect(tmp_path / "archive.db")
    DicomNodes(conn).add_dicom_node("ws-01", "WS01", "10.0.0.21", 104, may_query=True)
    conn.execute(
        "CREATE TABLE governance_workstations (name TEXT PRIMARY KEY, location TEXT NOT NULL,"
        " added_by TEXT NOT NULL, added_at TEXT NOT NULL)"
    )
    conn.execute(
        "INSERT INTO governance_workstations VALUES ('ws-01', 'MacLab 2', 'boss', '2025-01-01')"
    )
    place = Workstations(conn).get("ws-01")
    assert (place.location, place.added_by, place.aet) == ("MacLab 2", "boss", "WS01")
    before = conn.total_changes
    Workstations(conn).all()  # nothing left to adopt: no write
    assert conn.total_changes == before

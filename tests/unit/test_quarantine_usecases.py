"""Quarantine review as use cases (issue 21): the named reviewer acts, authorised from
actions.toml, audited once; a refusal says why; the ingester never releases."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.access.principal import Principal
from archive.core import Ports, Refusal
from archive.db import connect
from archive.paths import HomePaths
from archive.pixels import load_masking_policy
from archive.quarantine import QuarantineStore
from archive.quarantine import usecases as uq
from archive.vault import Keyring
from archive.vault.sealing import KdfParams

POLICIES = Path(__file__).resolve().parents[2] / "policies"
FAST = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)


class Audit:
    def __init__(self) -> None:
        self.events: list = []

    def append(self, event) -> int:
        self.events.append(event)
        return len(self.events)


PAT = Principal("pat", ("personnel",), True)
ALICE = Principal("alice", ("personnel",), True)
TRN = Principal("trn", ("trainer",), True)


@pytest.fixture
def room(tmp_path: Path) -> uq.QuarantineRoom:
    home = HomePaths(tmp_path)
    home.data_dir.mkdir()
    ring = Keyring.create(tmp_path / "keys" / "keyring.json", "test passphrase 42", kdf=FAST)
    conn = connect(home.db_path)
    store = QuarantineStore(home, ring, conn)
    ports = Ports(db=conn, audit=Audit(), policies_dir=POLICIES, source="test")
    return uq.QuarantineRoom(ports, store, load_masking_policy(POLICIES))


def _hold(room, kind="deid", by="rest:alice") -> str:
    return room.store.hold(
        b"DICM-ish", "residual identifier", raw=kind == "deid", intake="rest",
        ingested_by=by, kind=kind, study_uid="2.25.7",
    )  # fmt: skip


def test_reject_is_the_reviewers_own_act(room) -> None:
    item = _hold(room)
    refused = uq.reject_item(room, TRN, item, "no")
    assert isinstance(refused, Refusal) and "quarantine.review" in refused.reason
    assert refused.next and room.store.get(item).status == "held"
    done = uq.reject_item(room, PAT, item, "header problem")
    assert done.item.status == "rejected" and done.item.decided_by == "pat"
    again = uq.reject_item(room, PAT, item)
    assert again.code == "state" and "already rejected" in again.reason
    assert uq.reject_item(room, PAT, "q-nothing").code == "not_found"
    assert [(e.action, e.outcome, e.actor) for e in room.ports.audit.events] == [
        ("quarantine.reject", "denied", "trn"),
        ("quarantine.reject", "success", "pat"),
        ("quarantine.reject", "denied", "pat"),
        ("quarantine.reject", "denied", "pat"),
    ]


def test_consent_recorded_as_the_authenticated_person(room) -> None:
    level = next(iter(room.masking.consent.levels))
    done = uq.record_consent(room, PAT, "2.25.7", level, "form in the cabinet")
    assert done.level == level and room.store.consent_for("2.25.7") == level
    row = room.store.conn.execute("SELECT recorded_by FROM quarantine_consent").fetchone()
    assert row[0] == "pat"
    assert uq.record_consent(room, PAT, "2.25.7", "no-such-level").code == "invalid"
    assert uq.record_consent(room, TRN, "2.25.7", level).code == "forbidden"
    assert uq.record_consent(room, None, "2.25.7", level).code == "unauthenticated"
    event = room.ports.audit.events[0]
    assert (event.action, event.actor, event.target) == ("quarantine.consent", "pat", "2.25.7")


def _release(room, who, item):
    calls: list[str] = []

    def store_instance(data: bytes) -> dict:
        calls.append("stored")
        return {"ID": "abc"}

    result = uq.release_item(
        room, who, item, "ok", mint=lambda i, d, r: "n1", store_instance=store_instance,
        redeemed=lambda nonce: True, record_flags=lambda i, f: None,
    )  # fmt: skip
    return result, calls


def test_release_refused_to_the_ingester_others_and_header_problems(room) -> None:
    pixels = _hold(room, kind="pixels", by="rest:alice")
    own, calls = _release(room, ALICE, pixels)
    assert isinstance(own, Refusal) and "own request" in own.reason and not calls
    other, calls = _release(room, TRN, pixels)
    assert other.code == "forbidden" and not calls
    header = _hold(room, kind="deid", by="dicom:PACS")
    held, calls = _release(room, PAT, header)
    assert held.code == "state" and "header problem" in held.reason and not calls
    assert room.store.get(pixels).status == "held"
    audited = [(e.action, e.outcome, e.actor) for e in room.ports.audit.events]
    assert audited == [("quarantine.release", "denied", u) for u in ("alice", "trn", "pat")]

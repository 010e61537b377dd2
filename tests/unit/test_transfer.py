"""The transfer package, its receipt and the import's checks (issue 25), without Orthanc.

Keys derive from a keyring secret; a package written for one archive opens only there and
only when its sender is registered; any changed byte (envelope, signature, manifest, an
instance) or a missing/extra member refuses the whole package; a forged receipt is
refused; the import holds with a reason (never silently), honours the sender's review
outcomes, keeps case ids (or maps them) and text, and REST uploads redeem only import
tickets.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from io import BytesIO
from pathlib import Path

import pydicom
import pytest

from archive import db
from archive.catalogue import Catalogue
from archive.deid import DeidSecrets, deidentify, load_policy
from archive.ingest import Action, IngestService, tickets
from archive.paths import POLICIES_DIR
from archive.transfer import store as tstore
from archive.transfer.importer import Receiver, import_package, policy_check, receipt_body
from archive.transfer.keys import transfer_keys
from archive.transfer.package import (
    PackageRefused,
    Peer,
    TransferError,
    open_package,
    write_package,
)
from archive.transfer.receipt import sign_receipt, verify_receipt
from tests import corpus


class Ring:
    def __init__(self, seed: int) -> None:
        self.pseudonym_key = bytes([seed]) * 32


SENDER, RECEIVER, OTHER = transfer_keys(Ring(1)), transfer_keys(Ring(2)), transfer_keys(Ring(3))
SENDER_PEER = Peer("NSR", SENDER.signing_public_hex, SENDER.fingerprint)


@pytest.fixture(scope="module")
def instances() -> list[bytes]:
    policy = load_policy(POLICIES_DIR)
    secrets = DeidSecrets(pseudonym_key=b"\x07" * 32)
    out = []
    for ds in corpus.make_ct_series(3, patient="DOE^JOHN", patient_id="PID-9"):
        out.append(deidentify(corpus.to_bytes(ds), policy, secrets).released)
    return out


def _header(data: bytes):
    return pydicom.dcmread(BytesIO(data), stop_before_pixels=True)


def _write(
    tmp_path: Path, instances: list[bytes], *, review: dict | None = None, consent: str = "none"
) -> Path:
    study = str(_header(instances[0]).StudyInstanceUID)
    cases = [
        {
            "case_id": "NSR-2026-00001",
            "study_uid": study,
            "status": "available",
            "level": "limited-access",
            "metadata": {"title": "Pneumothorax", "findings": "Shift.", "keywords": ["chest"]},
            "consent": {"level": consent, "opt_out_checked": True},
        }
    ]

    def read(case):
        for n, data in enumerate(instances):
            h = _header(data)
            fields = {"sop_instance_uid": str(h.SOPInstanceUID), "series_uid": ""}
            fields["review"] = review if n == 0 else None
            yield fields, data

    out = tmp_path / "p.tatp"
    write_package(
        out,
        keys=SENDER,
        sender_organisation="NSR",
        receiver_organisation="Trust",
        receiver_recipient=RECEIVER.recipient,
        deid={"policy_version": "1", "level": "limited-access"},
        cases=cases,
        collections=[
            {
                "collection_id": "NSR-COL-0001",
                "title": "Set",
                "description": "",
                "owner": "ann",
                "case_ids": ["NSR-2026-00001"],
            }
        ],  # fmt: skip
        read_instances=read,
    )
    return out


def _members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def _flip(path: Path, member: str, at: int) -> Path:
    info = _members(path)[member]
    copy = path.with_name(f"flip-{member.replace('/', '_')}-{at}.tatp")
    data = bytearray(path.read_bytes())
    data[info.offset_data + min(at, info.size - 1)] ^= 0x01
    copy.write_bytes(bytes(data))
    return copy


def test_keys_are_derived_stable_and_distinct() -> None:
    again = transfer_keys(Ring(1))
    assert again.signing_public_hex == SENDER.signing_public_hex
    assert again.recipient == SENDER.recipient and SENDER.recipient.startswith("age1")
    assert SENDER.fingerprint != RECEIVER.fingerprint
    assert "AGE-SECRET" not in repr(SENDER)


def test_package_opens_at_the_receiver_only(tmp_path, instances) -> None:
    path = _write(tmp_path, instances)
    raw = path.read_bytes()
    assert b"DOE" not in raw and b"Pneumothorax" not in raw
    assert str(_header(instances[0]).SOPInstanceUID).encode() not in raw
    opened = open_package(path, RECEIVER, [SENDER_PEER])
    got = [data for _, _, data in opened.instances()]
    assert got == instances  # the same bytes: no second de-identification
    with pytest.raises(PackageRefused, match="another archive"):
        open_package(path, OTHER, [SENDER_PEER])


@pytest.mark.parametrize(
    ("member", "at", "says"),
    [
        ("envelope.json", 20, "signature does not verify"),
        ("envelope.sig", 5, "signature does not verify"),
        ("manifest.age", 150, "manifest"),
        ("instances/000002.age", 200, "does not match its hash"),
    ],
)
def test_any_changed_byte_refuses(tmp_path, instances, member, at, says) -> None:
    path = _write(tmp_path, instances)
    with pytest.raises(PackageRefused, match=says):
        open_package(_flip(path, member, at), RECEIVER, [SENDER_PEER])


def test_unregistered_or_wrong_sender_key_refuses(tmp_path, instances) -> None:
    path = _write(tmp_path, instances)
    with pytest.raises(PackageRefused, match="not a registered sender"):
        open_package(path, RECEIVER, [])
    impostor = Peer("NSR", OTHER.signing_public_hex, SENDER.fingerprint)
    with pytest.raises(PackageRefused, match="signature does not verify"):
        open_package(path, RECEIVER, [impostor])


def test_missing_or_extra_member_refuses(tmp_path, instances) -> None:
    path = _write(tmp_path, instances)
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    for variant in ("drop", "extra"):
        out = tmp_path / f"{variant}.tatp"
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
            kept = members[:-1] if variant == "drop" else members
            for info, data in kept:
                tar.addfile(info, io.BytesIO(data))
            if variant == "extra":
                extra = tarfile.TarInfo("instances/000009.age")
                extra.size = 3
                tar.addfile(extra, io.BytesIO(b"abc"))
        with pytest.raises(PackageRefused, match="disagree"):
            open_package(out, RECEIVER, [SENDER_PEER])


def test_receipt_verifies_and_forgeries_do_not(tmp_path, instances) -> None:
    path = _write(tmp_path, instances)
    opened = open_package(path, RECEIVER, [SENDER_PEER])
    rows = [("NSR-2026-00001", e["sop_instance_uid"], e["sha256"])
            for c in opened.manifest["cases"] for e in c["instances"]]  # fmt: skip
    items = [{"sender_case_id": r[0], "case_id": r[0], "sop_instance_uid": r[1], "sha256": r[2],
              "outcome": "stored", "reason": ""} for r in rows]  # fmt: skip
    items[1].update(outcome="held", reason="pixel check")
    body = {
        "receiver": {
            "organisation": "Trust",
            "signing_key": RECEIVER.signing_public_hex,
            "fingerprint": RECEIVER.fingerprint,
        },  # fmt: skip
        "envelope_sha256": opened.envelope_sha256,
        "manifest_sha256": opened.envelope["manifest_sha256"],
        "items": items,
    }
    doc = sign_receipt(body, RECEIVER)
    raw = json.dumps(doc).encode()
    peer = Peer("Trust", RECEIVER.signing_public_hex, RECEIVER.fingerprint)
    args = {"envelope_sha256": opened.envelope_sha256,
            "manifest_sha256": opened.envelope["manifest_sha256"], "sent": rows}  # fmt: skip
    verified = verify_receipt(doc, raw, peer=peer, **args)
    assert verified.stored == 2 and len(verified.held) == 1
    statement = verified.statement("Trust")
    assert "verified" in statement and "1 held for review there (pixel check)" in statement
    forged = json.loads(raw)
    forged["receipt"]["items"][0]["sha256"] = "0" * 64
    with pytest.raises(TransferError, match="signature does not verify"):
        verify_receipt(forged, raw, peer=peer, **args)
    other = Peer("Trust", OTHER.signing_public_hex, OTHER.fingerprint)
    with pytest.raises(TransferError, match="signature does not verify"):
        verify_receipt(doc, raw, peer=other, **args)
    with pytest.raises(TransferError, match="every instance"):
        verify_receipt(doc, raw, peer=peer, **{**args, "sent": rows[:2]})


class _Fake:
    """The receiving archive's ports, in memory."""

    def __init__(self, tmp_path: Path, pixel_reason: str = "") -> None:
        self.conn = db.connect(tmp_path / "r.db")
        self.catalogue = Catalogue(self.conn, "TRU")
        self.stored: dict[str, bytes] = {}
        self.held: dict[str, tuple[bytes, str]] = {}
        self.tickets: list[str] = []
        self.pixel_calls = 0
        self.pixel_reason = pixel_reason
        self.consents: list[tuple[str, str]] = []

    def receiver(self, level: str = "limited-access") -> Receiver:
        def pixel(data, consent):
            self.pixel_calls += 1
            return self.pixel_reason

        def hold(data, reason, **meta):
            item = f"q-{len(self.held)}"
            self.held[item] = (data, reason)
            return item

        def stored_sha(study, sop):
            data = self.stored.get(sop)
            return hashlib.sha256(data).hexdigest() if data else None

        def upload(data):
            self.stored[str(_header(data).SOPInstanceUID)] = data

        return Receiver(
            catalogue=self.catalogue, prefix="TRU", level=level, pixel_check=pixel,
            mint_ticket=lambda sop, data: self.tickets.append(sop), upload=upload,
            stored_sha256=stored_sha, hold=hold,
            held_sha256=lambda item: hashlib.sha256(self.held[item][0]).hexdigest(),
            record=lambda item: None, editor="rpers",
            record_consent=lambda study, level: self.consents.append((study, level)),
        )  # fmt: skip


def test_import_keeps_ids_text_collections_and_honours_reviews(tmp_path, instances) -> None:
    review = {"decision": "released", "reviewer": "pat", "decided_at": "", "reason_held": "US"}
    path = _write(tmp_path, instances, review=review, consent="teaching")
    opened = open_package(path, RECEIVER, [SENDER_PEER])
    fake = _Fake(tmp_path, pixel_reason="this archive's pixel check would quarantine: text")
    result = import_package(opened, fake.receiver())
    assert fake.consents == [(opened.manifest["cases"][0]["study_uid"], "teaching")]
    assert result.cases == {"NSR-2026-00001": "NSR-2026-00001"}
    # The reviewed instance is stored; the two unreviewed ones are held, with the reason.
    assert [i["outcome"] for i in result.items] == ["stored", "held", "held"]
    assert all("pixel check would quarantine" in i["reason"] for i in result.items[1:])
    assert fake.pixel_calls == 2 and len(fake.tickets) == 1
    assert result.items[0]["review"] == review and result.items[1]["review"] is None
    case = fake.catalogue.get("NSR-2026-00001")
    assert case.title == "Pneumothorax" and case.keywords == ["chest"]
    assert case.status == "quarantined"  # something of it is held
    (col,) = fake.catalogue.list_collections()
    assert [i.case_id for i in fake.catalogue.get_collection(col.collection_id).items] == [
        "NSR-2026-00001"
    ]
    body = receipt_body(opened, result, RECEIVER, "Trust")
    assert len(body["items"]) == 3 and body["collections"] == {"NSR-COL-0001": col.collection_id}


def test_import_maps_an_id_it_cannot_keep_and_holds_on_a_stricter_level(
    tmp_path, instances
) -> None:
    path = _write(tmp_path, instances)
    opened = open_package(path, RECEIVER, [SENDER_PEER])
    opened.manifest["cases"][0]["case_id"] = "TRU-2026-00001"  # the receiver's own prefix
    fake = _Fake(tmp_path)
    result = import_package(opened, fake.receiver(level="publication"))
    (mapped,) = result.cases.values()
    assert mapped.startswith("TRU-") and result.held == 3
    assert all("requires publication" in i["reason"] for i in result.items)


def test_policy_check_holds_what_is_not_deidentified_or_carries_an_identifier(
    tmp_path, instances
) -> None:
    fake = _Fake(tmp_path)
    case = {"level": "limited-access"}
    header = _header(instances[0])
    assert policy_check(header, case, fake.receiver()) == ""
    raw = _header(corpus.to_bytes(corpus.make_ct_series(1)[0]))
    assert "not marked de-identified" in policy_check(raw, case, fake.receiver())
    header.StudyDescription = "NHS 943 476 5919"
    assert "residual identifier" in policy_check(header, case, fake.receiver())


def test_text_the_receiver_refuses_is_listed_not_dropped_silently(tmp_path, instances) -> None:
    path = _write(tmp_path, instances)
    opened = open_package(path, RECEIVER, [SENDER_PEER])
    opened.manifest["cases"][0]["metadata"]["findings"] = "Patient NHS 943 476 5919."
    fake = _Fake(tmp_path)
    result = import_package(opened, fake.receiver())
    (held,) = result.text_held
    assert held["field"] == "findings" and "943" not in held["reason"]
    assert fake.catalogue.get("NSR-2026-00001").title == "Pneumothorax"


def test_rest_upload_redeems_only_an_import_ticket(tmp_path, instances) -> None:
    conn = db.connect(tmp_path / "i.db")
    key = bytes(range(32))
    service = IngestService(
        load_policy(POLICIES_DIR), DeidSecrets(pseudonym_key=b"\x01" * 32),
        lambda data, reason, **m: "q", lambda event: 0,
        redeem_import=lambda sop, data: tickets.redeem(
            conn, key, sop_uid=sop, data=data, imports_only=True),
    )  # fmt: skip
    data = instances[0]
    sop = str(_header(data).SOPInstanceUID)
    tickets.mint(conn, key, item_id="q-release", sop_uid=sop, data=data, reviewer="bob")
    plain = service.process(data, intake="rest", source="rest")
    assert str(_header(plain.data).SOPInstanceUID) != sop  # de-identified again
    tickets.mint(conn, key, item_id="import:abc", sop_uid=sop, data=data, reviewer="bob")
    kept = service.process(data, intake="rest", source="rest")
    assert kept.action is Action.STORE and kept.data == data
    again = service.process(data, intake="rest", source="rest")
    assert again.data != data  # single use


def test_peers_are_registered_by_key(tmp_path) -> None:
    conn = db.connect(tmp_path / "p.db")
    tstore.ensure_schema(conn)
    peer = tstore.add_peer(conn, "  Northern   Trust ", RECEIVER.signing_public_hex, "ann")
    assert tstore.peer_for(conn, "northern trust") == peer
    with pytest.raises(Exception, match="64 hex digits"):
        tstore.add_peer(conn, "X", "abc", "ann")
    renewed = tstore.add_peer(conn, "Northern Trust", OTHER.signing_public_hex, "ann")
    assert tstore.peers(conn) == [renewed]  # a new key replaces the organisation's old one


def test_export_gathers_text_collections_reviews_and_consent(tmp_path, instances) -> None:
    from archive.catalogue.model import SeriesSummary, StudySummary
    from archive.paths import HomePaths
    from archive.quarantine import QuarantineStore
    from archive.transfer.export import _reviews, gather
    from archive.vault import Keyring
    from archive.vault.keyring import keyring_path
    from archive.vault.sealing import KdfParams

    conn = db.connect(tmp_path / "s.db")
    cat = Catalogue(conn, "NSR")
    header = _header(instances[0])
    study = str(header.StudyInstanceUID)
    summary = StudySummary(
        study_uid=study, patient_pseudonym=str(header.PatientID), modalities=["CT"],
        body_part="", series_count=1, instance_count=3, age_band="", sex="",
        level="limited-access", intake="rest",
        series=[SeriesSummary(str(header.SeriesInstanceUID), "CT", "", 3)],
    )  # fmt: skip
    case = cat.upsert_from_study(summary, "a-b-c-d-e")
    cat.edit(case.case_id, {"title": "Pneumothorax", "keywords": ["chest"]}, "ann")
    col = cat.create_collection("Set", "", "ann")
    cat.add_to_collection(col.collection_id, [case.case_id], "ann")
    paths = HomePaths(tmp_path / "home")
    ring = Keyring.create(
        keyring_path(paths.keys_dir), "a passphrase for tests", kdf=KdfParams(1, 8 * 1024, 1)
    )
    quarantine = QuarantineStore(paths, ring, conn)
    sop = str(header.SOPInstanceUID)
    item = quarantine.hold(
        instances[0], "burnt-in text", raw=False, intake="rest", kind="pixels",
        study_uid=study, sop_uid=sop,
    )  # fmt: skip
    quarantine.decide(item, "released", "pat")
    quarantine.record_consent(study, "teaching", "pat")
    cases, collections = gather(conn, cat)
    assert cases[0]["metadata"]["title"] == "Pneumothorax"
    assert cases[0]["consent"]["level"] == "teaching"
    assert collections[0]["case_ids"] == [case.case_id]
    review = _reviews(conn)[sop]
    assert review["decision"] == "released" and review["reviewer"] == "pat"

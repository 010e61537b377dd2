"""The encrypted export package: age round trip, manifest checks, wrong keys refused."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pyrage
import pytest

from archive import db
from archive.export import PackageError, build_package, open_package, verify_package
from archive.governance import RemovalRequests, load_policy

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
UID1 = "1.2.826.0.1.3680043.10.1.1"
UID2 = "1.2.826.0.1.3680043.10.1.2"


def _approved(tmp_path):
    conn = db.connect(tmp_path / "a.db")
    reg = RemovalRequests(conn, load_policy())
    req = reg.create(
        ["NSR-1"], "teaching_materials", "lecture", "alice", ["trainer"],
        case_levels={"NSR-1": "limited-access"}, now=NOW,
    )  # fmt: skip
    reg.approve(req.id, "bob", ["tpd"], "Approved for the lecture.", now=NOW)
    ticket = reg.authorise_export(req.id, NOW + timedelta(hours=1))
    files = [("NSR-1", UID1, b"DICOM-ONE"), ("NSR-1", UID2, b"DICOM-TWO")]
    entries = [(c, u, hashlib.sha256(d).hexdigest()) for c, u, d in files]
    return reg.export_manifest(entries, ticket, now=NOW), files


def test_passphrase_round_trip_verifies(tmp_path) -> None:
    manifest, files = _approved(tmp_path)
    blob = build_package(files, manifest, "Approved.", passphrase="a long passphrase 1")
    assert b"DICOM-ONE" not in blob
    contents = open_package(blob, passphrase="a long passphrase 1")
    assert verify_package(contents) == []
    assert contents.manifest["approval"]["reference"] == "REMOVAL-000001"
    assert "educational" in contents.terms.lower()
    assert contents.approval.startswith("REMOVAL-000001")
    with pytest.raises(PackageError):
        open_package(blob, passphrase="the wrong passphrase")


def test_recipient_key_round_trip(tmp_path) -> None:
    manifest, files = _approved(tmp_path)
    identity = pyrage.x25519.Identity.generate()
    blob = build_package(files, manifest, "ok", recipient=str(identity.to_public()))
    contents = open_package(blob, identity=str(identity))
    assert contents.files["dicom/NSR-1/" + UID2 + ".dcm"] == b"DICOM-TWO"
    other = pyrage.x25519.Identity.generate()
    with pytest.raises(PackageError):
        open_package(blob, identity=str(other))


def test_file_not_matching_manifest_refused(tmp_path) -> None:
    manifest, files = _approved(tmp_path)
    tampered = [files[0], ("NSR-1", UID2, b"SOMETHING ELSE")]
    with pytest.raises(PackageError):
        build_package(tampered, manifest, "ok", passphrase="a long passphrase 1")
    with pytest.raises(PackageError):
        build_package(files[:1], manifest, "ok", passphrase="a long passphrase 1")
    with pytest.raises(PackageError):
        build_package(files, manifest, "ok", passphrase="short")


def test_verify_detects_tampering(tmp_path) -> None:
    manifest, files = _approved(tmp_path)
    contents = open_package(
        build_package(files, manifest, "ok", passphrase="a long passphrase 1"),
        passphrase="a long passphrase 1",
    )
    contents.files["dicom/NSR-1/" + UID1 + ".dcm"] = b"changed"
    contents.files["dicom/extra.dcm"] = b"x"
    problems = verify_package(contents)
    assert any("hash mismatch" in p for p in problems)
    assert any("unlisted" in p for p in problems)

"""Export packages, layout 2 (issue 25): signed manifest, screened teaching text, terms;
Debian's `age` opens them and `archive package verify|open` checks them for a recipient."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyrage
import pytest
from typer.testing import CliRunner

from archive import db
from archive.cli.main import app
from archive.export import build_package, check_signature, open_package, verify_package
from archive.governance import RemovalRequests, load_policy
from archive.transfer.keys import transfer_keys

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
UID1 = "1.2.826.0.1.3680043.10.1.1"


class Ring:
    pseudonym_key = b"\x05" * 32


SIGNER = transfer_keys(Ring())
TEACHING = {
    "NSR-1": {
        "title": "Pneumothorax",
        "findings": "Seen in clinic, NHS 943 476 5919.",
        "keywords": ["chest"],
        "diagnosis": "",
    }
}


def _package(tmp_path: Path, identity) -> tuple[bytes, dict]:
    conn = db.connect(tmp_path / "a.db")
    reg = RemovalRequests(conn, load_policy())
    req = reg.create(
        ["NSR-1"], "teaching_materials", "lecture", "alice", ["trainer"],
        case_levels={"NSR-1": "limited-access"}, now=NOW,
    )  # fmt: skip
    reg.approve(req.id, "bob", ["tpd"], "Approved for the lecture.", now=NOW)
    ticket = reg.authorise_export(req.id, NOW + timedelta(hours=1))
    files = [("NSR-1", UID1, b"DICOM-ONE")]
    entries = [(c, u, hashlib.sha256(d).hexdigest()) for c, u, d in files]
    manifest = reg.export_manifest(entries, ticket, now=NOW)
    blob = build_package(
        files, manifest, "Approved.", recipient=str(identity.to_public()),
        teaching=TEACHING, signer=SIGNER,
    )  # fmt: skip
    return blob, manifest


def test_signed_with_screened_teaching_text_and_terms(tmp_path) -> None:
    identity = pyrage.x25519.Identity.generate()
    blob, _ = _package(tmp_path, identity)
    contents = open_package(blob, identity=str(identity))
    assert check_signature(contents) == [] and verify_package(contents) == []
    assert check_signature(contents, SIGNER.signing_public_hex) == []
    other = transfer_keys(type("R", (), {"pseudonym_key": b"\x06" * 32})())
    assert check_signature(contents, other.signing_public_hex)  # not the key given
    teaching = contents.manifest["teaching"]["NSR-1"]
    assert teaching == {"title": "Pneumothorax", "keywords": ["chest"]}
    (withheld,) = contents.manifest["teaching_withheld"]
    assert withheld["field"] == "findings" and "943" not in json.dumps(withheld)
    assert "Pneumothorax" in contents.teaching and "943" not in contents.teaching
    assert "educational use only" in contents.terms
    # Tampering with the signed manifest (or the terms) is found.
    forged = contents.manifest_bytes.replace(b"Pneumothorax", b"Pneumonia")
    assert check_signature(type(contents)(**{**contents.__dict__, "manifest_bytes": forged}))
    altered = type(contents)(**{**contents.__dict__, "terms": "Do as you like."})
    assert verify_package(altered) == ["hash mismatch TERMS.txt"]


def test_unsigned_layout_1_is_reported(tmp_path) -> None:
    identity = pyrage.x25519.Identity.generate()
    blob = build_package(
        [("NSR-1", UID1, b"X")],
        {"cases": [{"case_id": "NSR-1", "instances": [
            {"sop_instance_uid": UID1, "sha256": hashlib.sha256(b"X").hexdigest()}]}]},
        "ok", recipient=str(identity.to_public()),
    )  # fmt: skip
    contents = open_package(blob, identity=str(identity))
    assert "not signed" in check_signature(contents)[0]


@pytest.mark.skipif(shutil.which("age") is None, reason="Debian's age is not installed")
def test_recipient_opens_with_age_and_archive_package(tmp_path) -> None:
    identity = pyrage.x25519.Identity.generate()
    blob, _ = _package(tmp_path, identity)
    (tmp_path / "pkg.tar.age").write_bytes(blob)
    key = tmp_path / "key.txt"
    key.write_text(f"# created for a test\n{identity}\n")
    out, src = str(tmp_path / "pkg.tar"), str(tmp_path / "pkg.tar.age")
    done = subprocess.run(
        ["age", "-d", "-i", str(key), "-o", out, src], capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr
    with tarfile.open(tmp_path / "pkg.tar") as tar:
        assert {"manifest.json", "manifest.sig", "TERMS.txt", "TEACHING.txt"} <= set(tar.getnames())
    runner = CliRunner()
    ok = runner.invoke(app, ["package", "verify", str(tmp_path / "pkg.tar.age"), "-i", str(key),
                             "--signing-key", SIGNER.signing_public_hex, "--json"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output)
    assert report["ok"] and report["signer_fingerprint"] == SIGNER.fingerprint
    plain = runner.invoke(app, ["package", "verify", str(tmp_path / "pkg.tar")])
    assert plain.exit_code == 0 and "compare this fingerprint" in plain.output
    opened = runner.invoke(app, ["package", "open", str(tmp_path / "pkg.tar.age"), "-i", str(key),
                                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert opened.exit_code == 0, opened.output
    assert (tmp_path / "out" / "dicom" / "NSR-1" / f"{UID1}.dcm").read_bytes() == b"DICOM-ONE"
    assert "Pneumothorax" in (tmp_path / "out" / "TEACHING.txt").read_text()
    # A package whose manifest was changed and re-encrypted is refused, nothing written.
    with tarfile.open(tmp_path / "pkg.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    members["manifest.json"] = members["manifest.json"].replace(b"lecture", b"sale!!!")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "bad.tar").write_bytes(buffer.getvalue())
    bad = runner.invoke(app, ["package", "open", str(tmp_path / "bad.tar"),
                              "--out", str(tmp_path / "bad")])  # fmt: skip
    assert bad.exit_code == 1 and "signature does not verify" in bad.output
    assert not (tmp_path / "bad").exists()

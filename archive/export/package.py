"""Build and open the encrypted export package (age format, via pyrage).

Why age: a well-kept, audited format with both passphrase (scrypt) and public-key
(X25519) recipients, so a removal can go to a person with a passphrase given out of
band or to a publisher's key. Inside is a plain tar:

    manifest.json            case ids, SOP instance UIDs, SHA-256 per file, approval
    TERMS.txt                property of the School, educational use only
    APPROVAL.txt             the approval reference and its written text
    dicom/<case>/<sop>.dcm   the de-identified DICOM, exactly as the archive holds it

The package is built in memory: nothing de-identified or not ever touches disk in clear.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

import pyrage

from archive.errors import ArchiveError

MIN_PASSPHRASE = 12


class PackageError(ArchiveError):
    """The package cannot be built, decrypted or verified."""


@dataclass(frozen=True)
class PackageContents:
    manifest: dict
    terms: str
    approval: str
    files: dict[str, bytes]  # archive path -> bytes


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def dicom_path(case_id: str, sop_uid: str) -> str:
    return f"dicom/{case_id}/{sop_uid}.dcm"


def build_package(
    instances: Sequence[tuple[str, str, bytes]],
    manifest: dict,
    approval_text: str,
    *,
    passphrase: str | None = None,
    recipient: str | None = None,
) -> bytes:
    """Encrypt (case_id, sop_uid, dicom bytes) plus manifest, terms and approval.

    Exactly one of `passphrase` or `recipient` (an age X25519 public key, age1...).
    Every file is checked against the manifest's SHA-256 before it is packed."""
    if (passphrase is None) == (recipient is None):
        raise PackageError("give either a passphrase or a recipient public key, not both.")
    if passphrase is not None and len(passphrase) < MIN_PASSPHRASE:
        raise PackageError(f"the export passphrase must have at least {MIN_PASSPHRASE} characters.")
    expected = {
        i["sop_instance_uid"]: (c["case_id"], i["sha256"])
        for c in manifest.get("cases", [])
        for i in c["instances"]
    }
    if len(expected) != len(instances):
        raise PackageError("the package's files and its manifest disagree; export again.")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _member(tar, "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())
        _member(tar, "TERMS.txt", str(manifest.get("terms", "")).encode())
        reference = (manifest.get("approval") or {}).get("reference", "")
        _member(tar, "APPROVAL.txt", f"{reference}\n\n{approval_text}\n".encode())
        for case_id, sop_uid, data in instances:
            if expected.get(sop_uid) != (case_id, hashlib.sha256(data).hexdigest()):
                raise PackageError("a file does not match its manifest entry; export again.")
            _member(tar, dicom_path(case_id, sop_uid), data)
    plain = buffer.getvalue()
    try:
        if passphrase is not None:
            return pyrage.passphrase.encrypt(plain, passphrase)
        return pyrage.encrypt(plain, [pyrage.x25519.Recipient.from_str(recipient)])
    except pyrage.RecipientError:
        raise PackageError("the recipient is not an age public key (age1...).") from None


def open_package(
    blob: bytes, *, passphrase: str | None = None, identity: str | None = None
) -> PackageContents:
    """Decrypt and unpack (for the recipient's side and for tests)."""
    try:
        if passphrase is not None:
            plain = pyrage.passphrase.decrypt(blob, passphrase)
        elif identity is not None:
            plain = pyrage.decrypt(blob, [pyrage.x25519.Identity.from_str(identity)])
        else:
            raise PackageError("give the passphrase or the identity to open the package.")
    except (pyrage.DecryptError, pyrage.IdentityError):
        raise PackageError("the package cannot be decrypted with this key.") from None
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            files[member.name] = handle.read()
    manifest = json.loads(files.pop("manifest.json"))
    return PackageContents(
        manifest=manifest,
        terms=files.pop("TERMS.txt").decode(),
        approval=files.pop("APPROVAL.txt").decode(),
        files=files,
    )


def verify_package(contents: PackageContents) -> list[str]:
    """Problems found checking every file against the manifest; empty means verified."""
    problems: list[str] = []
    listed = set()
    for case in contents.manifest.get("cases", []):
        for inst in case["instances"]:
            path = dicom_path(case["case_id"], inst["sop_instance_uid"])
            listed.add(path)
            data = contents.files.get(path)
            if data is None:
                problems.append(f"missing {path}")
            elif hashlib.sha256(data).hexdigest() != inst["sha256"]:
                problems.append(f"hash mismatch {path}")
    problems += [f"unlisted {p}" for p in sorted(set(contents.files) - listed)]
    return problems

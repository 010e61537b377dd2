"""Build and open the encrypted export package (age format, via pyrage).

Why age: a well-kept, audited format with both passphrase (scrypt) and public-key
(X25519) recipients, so a removal can go to a person with a passphrase given out of
band or to a publisher's key. Inside is a plain tar (layout 2, archive/export/FORMAT.md):

    manifest.json            case ids, SOP instance UIDs, SHA-256 per file, approval,
                             teaching text, signer, hashes of the text files
    manifest.sig             Ed25519 signature of manifest.json (the archive's key)
    TERMS.txt                property of the School, educational use only
    APPROVAL.txt             the approval reference and its written text
    TEACHING.txt             the cases' teaching text (screened for identifiers)
    dicom/<case>/<sop>.dcm   the de-identified DICOM, exactly as the archive holds it

The package is built in memory: nothing de-identified or not ever touches disk in clear.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyrage
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from archive.errors import ArchiveError

MIN_PASSPHRASE = 12
LAYOUT = 2
SIGNATURE_CONTEXT = b"ta-export/v2 manifest\n"
TEACHING_TEXT = (
    "title", "clinical_history", "findings", "diagnosis", "differential", "discussion",
    "teaching_points", "anatomy", "references",
)  # fmt: skip
TEACHING_LISTS = ("keywords", "authors")
TEACHING_CHOICES = ("category", "difficulty")


class PackageError(ArchiveError):
    """The package cannot be built, decrypted or verified."""


@dataclass(frozen=True)
class PackageContents:
    manifest: dict
    terms: str
    approval: str
    files: dict[str, bytes]  # archive path -> bytes
    signature: str = ""  # hex, "" for an unsigned (layout 1) package
    teaching: str = ""
    manifest_bytes: bytes = b""


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def dicom_path(case_id: str, sop_uid: str) -> str:
    return f"dicom/{case_id}/{sop_uid}.dcm"


def screen_teaching(
    teaching: Mapping[str, Mapping[str, object]],
    scan: Callable[[str], list[str]] | None = None,
) -> tuple[dict[str, dict[str, object]], list[dict[str, object]]]:
    """(teaching text that passed the free-text identifier check, fields withheld)."""
    if scan is None:
        from archive.deid.residual import scan_text

        scan = scan_text
    kept: dict[str, dict[str, object]] = {}
    withheld: list[dict[str, object]] = []
    for case_id, fields in sorted(teaching.items()):
        out: dict[str, object] = {}
        for name in (*TEACHING_TEXT, *TEACHING_LISTS, *TEACHING_CHOICES):
            value = fields.get(name)
            if value in (None, "", [], ()):
                continue
            texts = [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
            kinds = sorted({k for t in texts for k in scan(t)})
            if kinds:
                withheld.append({"case_id": case_id, "field": name, "kinds": kinds})
                continue
            out[name] = list(texts) if isinstance(value, list | tuple) else texts[0]
        kept[case_id] = out
    return kept, withheld


def teaching_text(teaching: Mapping[str, Mapping[str, object]]) -> str:
    """TEACHING.txt: the screened teaching text, one section per case."""
    lines: list[str] = []
    for case_id, fields in sorted(teaching.items()):
        lines += [case_id, "=" * len(case_id)]
        for name, value in fields.items():
            shown = ", ".join(value) if isinstance(value, list) else str(value)
            lines += [f"{name.replace('_', ' ').capitalize()}: {shown}"]
        lines.append("")
    return "\n".join(lines) + "\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_package(
    instances: Sequence[tuple[str, str, bytes]],
    manifest: dict,
    approval_text: str,
    *,
    passphrase: str | None = None,
    recipient: str | None = None,
    teaching: Mapping[str, Mapping[str, object]] | None = None,
    signer: Any = None,
) -> bytes:
    """Encrypt (case_id, sop_uid, dicom bytes) plus manifest, terms, approval and the
    cases' teaching text (screened), with the manifest signed by `signer` (anything with
    `sign(bytes) -> hex`, `signing_public_hex` and `fingerprint`: the archive's transfer
    keys). Without a signer the package is layout 1 (unsigned, no teaching text).

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
    terms = str(manifest.get("terms", "")).encode()
    reference = (manifest.get("approval") or {}).get("reference", "")
    approval = f"{reference}\n\n{approval_text}\n".encode()
    texts = {"TERMS.txt": terms, "APPROVAL.txt": approval}
    signature = b""
    if signer is not None:
        kept, withheld = screen_teaching(teaching or {})
        texts["TEACHING.txt"] = teaching_text(kept).encode()
        manifest = {
            **manifest,
            "layout": LAYOUT,
            "signer": {"signing_key": signer.signing_public_hex, "fingerprint": signer.fingerprint},
            "files": {name: _sha(data) for name, data in texts.items()},
            "teaching": kept,
            "teaching_withheld": withheld,
        }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    if signer is not None:
        signature = (signer.sign(SIGNATURE_CONTEXT + manifest_bytes) + "\n").encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _member(tar, "manifest.json", manifest_bytes)
        if signature:
            _member(tar, "manifest.sig", signature)
        for name, data in texts.items():
            _member(tar, name, data)
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
    return contents_of(unpack(plain))


def contents_of(files: dict[str, bytes]) -> PackageContents:
    """The parts of an unpacked package (the tar's members by name)."""
    files = dict(files)
    try:
        raw = files.pop("manifest.json")
        manifest = json.loads(raw)
        terms = files.pop("TERMS.txt").decode()
        approval = files.pop("APPROVAL.txt").decode()
    except (KeyError, ValueError, UnicodeDecodeError):
        raise PackageError("this is not an export package (manifest, terms, approval).") from None
    return PackageContents(
        manifest=manifest,
        terms=terms,
        approval=approval,
        signature=files.pop("manifest.sig", b"").decode("ascii", "replace").strip(),
        teaching=files.pop("TEACHING.txt", b"").decode("utf-8", "replace"),
        manifest_bytes=raw,
        files=files,
    )


def unpack(plain: bytes) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            files[member.name] = handle.read()
    return files


def check_signature(contents: PackageContents, signing_key: str | None = None) -> list[str]:
    """Problems with the manifest's signature; empty means signed by the named key (or,
    without one, by the key the manifest names: compare its fingerprint out of band)."""
    if not contents.signature:
        return ["the package is not signed (layout 1): nobody can tell who made it"]
    signer = contents.manifest.get("signer") or {}
    key = str(signer.get("signing_key", ""))
    if signing_key is not None and key != signing_key.strip().lower():
        return ["the package is signed by another key than the one given"]
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(key)).verify(
            bytes.fromhex(contents.signature), SIGNATURE_CONTEXT + contents.manifest_bytes
        )
    except (InvalidSignature, ValueError):
        return ["the manifest's signature does not verify: the package was altered"]
    if hashlib.sha256(bytes.fromhex(key)).hexdigest()[:32] != signer.get("fingerprint"):
        return ["the signer's fingerprint does not match its key"]
    return []


def verify_package(contents: PackageContents) -> list[str]:
    """Problems found checking every file against the manifest; empty means verified."""
    problems: list[str] = []
    texts = {"TERMS.txt": contents.terms.encode(), "APPROVAL.txt": contents.approval.encode(),
             "TEACHING.txt": contents.teaching.encode()}  # fmt: skip
    for name, digest in (contents.manifest.get("files") or {}).items():
        if name not in texts or _sha(texts[name]) != digest:
            problems.append(f"hash mismatch {name}")
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


def export_extras(catalogue: Any, case_ids: Sequence[str], keyring: Any) -> dict[str, Any]:
    """The layout-2 arguments of `build_package` for these cases: their teaching text
    from the catalogue (screened when packed) and the archive's signer (its transfer
    signing key, derived from the keyring: archive/transfer/keys.py)."""
    from archive.transfer.keys import transfer_keys

    fields = (*TEACHING_TEXT, *TEACHING_LISTS, *TEACHING_CHOICES)
    teaching = {}
    for case_id in case_ids:
        case = catalogue.get(case_id)
        teaching[case.case_id] = {name: getattr(case, name, "") for name in fields}
    return {"teaching": teaching, "signer": transfer_keys(keyring)}

"""Write and open the transfer package (FORMAT.md sections 2 and 3).

`write_package` streams one instance at a time into the tar (each encrypted to the
receiver), so a large archive never sits whole in memory and nothing is in clear on
disk. `open_package` checks everything that can be checked before a byte is stored:
the version, the member list, the envelope's signature under a registered peer's key,
the manifest's hashes and decryption, and every instance ciphertext's hash.
`OpenedPackage.instances()` then decrypts one at a time and checks each plaintext hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyrage

from archive.errors import ArchiveError
from archive.transfer.keys import TransferKeys, verify_signature

FORMAT = "ta-transfer/v1"
VERSION_BYTES = b"ta-transfer/v1\n"
ENVELOPE_CONTEXT = b"ta-transfer/v1 envelope\n"
MANIFEST_FORMAT = "ta-transfer/v1 manifest"
_INSTANCE = re.compile(r"^instances/\d{6,}\.age$")


class TransferError(ArchiveError):
    """A package or receipt cannot be built, opened or believed."""


class PackageRefused(TransferError):
    """The package fails a check; nothing of it was stored."""


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def instance_member(number: int) -> str:
    return f"instances/{number:06d}.age"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


@dataclass(frozen=True)
class Written:
    path: Path
    envelope: dict
    envelope_sha256: str
    manifest_sha256: str
    rows: list[tuple[str, str, str]]  # (case_id, sop uid, sha256) of every instance


def write_package(
    out: Path,
    *,
    keys: TransferKeys,
    sender_organisation: str,
    receiver_organisation: str,
    receiver_recipient: str,
    deid: Mapping[str, str],
    cases: list[dict],
    collections: list[dict],
    read_instances: Callable[[dict], Iterable[tuple[dict, bytes]]],
    progress: Callable[[int, int], None] = lambda done, total: None,
    now: datetime | None = None,
) -> Written:
    """Write the package to `out` (a new file, published by rename when complete).

    `cases` are manifest cases without `instances`; `read_instances(case)` yields
    (instance fields: sop_instance_uid, series_uid, review) and the DICOM bytes."""
    try:
        recipient = pyrage.x25519.Recipient.from_str(receiver_recipient)
    except Exception:  # noqa: BLE001 - pyrage raises its own types
        raise TransferError(
            "the receiving collection's public key is not an age X25519 recipient (age1...); "
            "record it with `archive recipients add ... --public-key age1...`."
        ) from None
    if out.exists():
        raise TransferError(f"{out} already exists; choose a new file for the package.")
    partial = out.with_name(out.name + f".partial-{os.getpid()}")
    rows: list[tuple[str, str, str]] = []
    manifest_cases: list[dict] = []
    spooled: list[tuple[str, int, int]] = []  # (member, offset, size) in the spool
    # The manifest and envelope that name the instances' hashes come first in the tar,
    # so the instance ciphertexts (encrypted to the receiver: nothing in clear) are
    # spooled to a temporary file beside the output until they are known.
    try:
        with tempfile.TemporaryFile(dir=out.parent) as spool:
            number = 0
            for case in cases:
                listed = []
                for fields, data in read_instances(case):
                    number += 1
                    member = instance_member(number)
                    cipher = pyrage.encrypt(data, [recipient])
                    digest = sha256(data)
                    listed.append(
                        {
                            "file": member,
                            "sop_instance_uid": fields["sop_instance_uid"],
                            "series_uid": fields.get("series_uid", ""),
                            "sha256": digest,
                            "age_sha256": sha256(cipher),
                            "review": fields.get("review"),
                        }
                    )
                    rows.append((case["case_id"], fields["sop_instance_uid"], digest))
                    spooled.append((member, spool.tell(), len(cipher)))
                    spool.write(cipher)
                    progress(number, 0)
                manifest_cases.append({**case, "instances": listed})
            total = number
            manifest = {
                "format": MANIFEST_FORMAT,
                "sender_fingerprint": keys.fingerprint,
                "receiver_recipient": receiver_recipient,
                "deid": dict(deid),
                "cases": manifest_cases,
                "collections": collections,
            }
            plain = canonical(manifest)
            manifest_age = pyrage.encrypt(plain, [recipient])
            envelope = {
                "format": FORMAT,
                "created_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
                "sender": {
                    "organisation": sender_organisation,
                    "signing_key": keys.signing_public_hex,
                    "fingerprint": keys.fingerprint,
                },
                "receiver": {
                    "organisation": receiver_organisation,
                    "recipient": receiver_recipient,
                },
                "manifest_age_sha256": sha256(manifest_age),
                "manifest_sha256": sha256(plain),
                "instance_count": total,
                "case_count": len(manifest_cases),
            }
            envelope_bytes = canonical(envelope)
            signature = keys.sign(ENVELOPE_CONTEXT + envelope_bytes)
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as raw:
                with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    _add(tar, "VERSION", VERSION_BYTES)
                    _add(tar, "envelope.json", envelope_bytes)
                    _add(tar, "envelope.sig", (signature + "\n").encode())
                    _add(tar, "manifest.age", manifest_age)
                    for done, (member, offset, size) in enumerate(spooled, start=1):
                        spool.seek(offset)
                        _add(tar, member, spool.read(size))
                        progress(done, total)
                raw.flush()
                os.fsync(raw.fileno())
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Written(out, envelope, sha256(envelope_bytes), envelope["manifest_sha256"], rows)


# -- opening ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Peer:
    organisation: str
    signing_key: str  # hex
    fingerprint: str


@dataclass
class OpenedPackage:
    path: Path
    envelope: dict
    envelope_sha256: str
    manifest: dict
    sender: Peer
    _identity: Any
    _offsets: dict[str, tuple[int, int]]

    def instances(self) -> Iterator[tuple[dict, dict, bytes]]:
        """(case, instance entry, DICOM bytes), decrypted one at a time, each checked."""
        with open(self.path, "rb") as handle:
            for case in self.manifest["cases"]:
                for entry in case["instances"]:
                    offset, size = self._offsets[entry["file"]]
                    handle.seek(offset)
                    cipher = handle.read(size)
                    if sha256(cipher) != entry["age_sha256"]:
                        raise PackageRefused(f"{entry['file']} changed while it was read.")
                    try:
                        data = pyrage.decrypt(cipher, [self._identity])
                    except Exception:  # noqa: BLE001
                        raise PackageRefused(f"{entry['file']} does not decrypt.") from None
                    if sha256(data) != entry["sha256"]:
                        raise PackageRefused(f"{entry['file']} does not match its hash.")
                    yield case, entry, data


def _read_members(path: Path) -> tuple[list[str], dict[str, tuple[int, int]], dict[str, bytes]]:
    small = ("VERSION", "envelope.json", "envelope.sig", "manifest.age")
    names: list[str] = []
    offsets: dict[str, tuple[int, int]] = {}
    contents: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    raise PackageRefused(f"the package holds a non-file member {member.name!r}.")
                names.append(member.name)
                offsets[member.name] = (member.offset_data, member.size)
                if member.name in small:
                    handle = tar.extractfile(member)
                    assert handle is not None
                    contents[member.name] = handle.read()
    except (OSError, tarfile.TarError) as exc:
        raise PackageRefused(f"{path} is not a readable transfer package ({exc}).") from None
    return names, offsets, contents


def open_package(path: Path, keys: TransferKeys, peers: Iterable[Peer]) -> OpenedPackage:
    """Every check of FORMAT.md section 3, steps 1 to 4; PackageRefused on any failure."""
    names, offsets, contents = _read_members(path)
    if contents.get("VERSION") != VERSION_BYTES:
        raise PackageRefused("this is not a ta-transfer/v1 package (VERSION).")
    head = ["VERSION", "envelope.json", "envelope.sig", "manifest.age"]
    if names[:4] != head or len(set(names)) != len(names):
        raise PackageRefused("the package's members are not those of ta-transfer/v1.")
    rest = names[4:]
    if any(not _INSTANCE.match(n) for n in rest):
        raise PackageRefused("the package holds a member ta-transfer/v1 does not define.")
    envelope_bytes = contents["envelope.json"]
    try:
        envelope = json.loads(envelope_bytes)
        claimed = str(envelope["sender"]["fingerprint"])
        signing_key = str(envelope["sender"]["signing_key"])
    except (ValueError, KeyError, TypeError):
        raise PackageRefused("the envelope is not the JSON ta-transfer/v1 defines.") from None
    signature = contents["envelope.sig"].decode("ascii", "replace").strip()
    sender = next((p for p in peers if p.fingerprint == claimed), None)
    if sender is None:
        raise PackageRefused(
            f"the package is signed by key {claimed[:16]}..., which is not a registered sender; "
            "register the sending archive's key with `archive transfer peers add` (compare its "
            "fingerprint with the sender by telephone) and import again."
        )
    if sender.signing_key != signing_key or not verify_signature(
        sender.signing_key, signature, ENVELOPE_CONTEXT + envelope_bytes
    ):
        raise PackageRefused(
            f"the envelope's signature does not verify under {sender.organisation}'s registered "
            "key: the package was altered or not made by them; ask them to send it again."
        )
    if envelope.get("format") != FORMAT:
        raise PackageRefused("the envelope's format is not ta-transfer/v1.")
    manifest_age = contents["manifest.age"]
    if sha256(manifest_age) != envelope.get("manifest_age_sha256"):
        raise PackageRefused("manifest.age does not match the signed envelope's hash.")
    try:
        plain = pyrage.decrypt(manifest_age, [keys.identity])
    except Exception:  # noqa: BLE001
        raise PackageRefused(
            "the manifest does not decrypt with this archive's transfer identity: the package "
            "was made for another archive."
        ) from None
    if sha256(plain) != envelope.get("manifest_sha256"):
        raise PackageRefused("the manifest does not match the signed envelope's hash.")
    manifest = json.loads(plain)
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("sender_fingerprint") != claimed:
        raise PackageRefused("the manifest names another sender or format.")
    if manifest.get("receiver_recipient") != keys.recipient:
        raise PackageRefused("the manifest was made for another archive's key.")
    listed = [i for c in manifest.get("cases", []) for i in c.get("instances", [])]
    files = [i["file"] for i in listed]
    if sorted(files) != sorted(rest) or len(set(files)) != len(files):
        raise PackageRefused("the package's instance files and its manifest disagree.")
    if len(files) != envelope.get("instance_count"):
        raise PackageRefused("the package's instance count and its envelope disagree.")
    with open(path, "rb") as handle:
        for entry in listed:
            offset, size = offsets[entry["file"]]
            handle.seek(offset)
            if sha256(handle.read(size)) != entry["age_sha256"]:
                raise PackageRefused(
                    f"{entry['file']} does not match its hash in the signed manifest: the "
                    "package was altered; ask the sender for a new copy."
                )
    return OpenedPackage(
        path, envelope, sha256(envelope_bytes), manifest, sender, keys.identity, offsets
    )

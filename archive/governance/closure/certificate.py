"""The wipe certificate: the fields of NIST SP 800-88 Rev. 1's sample certificate of
sanitization (Appendix G), as canonical JSON plus a human-readable text, signed through
a hook so the audit key never leaves the vault.

Sanitization is a Purge by Cryptographic Erase (every key-encryption key and keyring
backup destroyed, so the data keys die with them), then a Clear (ciphertext deleted and
volume headers destroyed): overwriting alone is unreliable on SSDs and journaling
filesystems.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

from archive.governance._store import canonical_json, person_key, sha256_of, ts
from archive.governance.errors import CertificateError

FORMAT = "teaching-archive/sanitization-certificate"
FORMAT_VERSION = 1
METHOD_TYPES = ("Clear", "Purge", "Destroy")
VERIFICATION_METHODS = ("Full", "Quick Sampling", "Other")


def _need(value: str, name: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise CertificateError(f"the certificate needs {name}.")


@dataclass(frozen=True)
class Person:
    name: str
    title: str
    organisation: str
    location: str = ""
    phone: str = ""

    def __post_init__(self) -> None:
        _need(self.name, "the person's name")
        _need(self.title, "the person's title")
        _need(self.organisation, "the person's organisation")


@dataclass(frozen=True)
class Media:
    """One medium sanitized: its type, where it came from, its serial or identifier."""

    media_type: str
    source: str
    identifier: str
    make_model: str = ""
    classification: str = "OFFICIAL-SENSITIVE (patient data, de-identified)"
    data_backed_up: str = "Yes: transferred to the receiving collection"
    backup_location: str = ""

    def __post_init__(self) -> None:
        _need(self.media_type, "each medium's type")
        _need(self.source, "each medium's source")
        _need(self.identifier, "each medium's serial number or identifier")


@dataclass(frozen=True)
class SanitizationStep:
    method_type: str
    method_used: str
    details: str

    def __post_init__(self) -> None:
        if self.method_type not in METHOD_TYPES:
            raise CertificateError(f"method type must be one of {', '.join(METHOD_TYPES)}.")
        _need(self.method_used, "each step's method")
        _need(self.details, "each step's details")


@dataclass(frozen=True)
class Tool:
    name: str
    version: str

    def __post_init__(self) -> None:
        _need(self.name, "the tool's name")
        _need(self.version, "the tool's version")


@dataclass(frozen=True)
class Verification:
    method: str
    result: str  # "passed" or "failed"
    details: str

    def __post_init__(self) -> None:
        if self.method not in VERIFICATION_METHODS:
            raise CertificateError(
                f"verification method must be one of {', '.join(VERIFICATION_METHODS)}."
            )
        if self.result not in ("passed", "failed"):
            raise CertificateError("verification result must be 'passed' or 'failed'.")
        _need(self.details, "the verification's details")


def default_steps(
    *, keys_destroyed: int, files_deleted: int, volume: str
) -> tuple[SanitizationStep, SanitizationStep]:
    """The archive's procedure: Purge by cryptographic erase, then Clear."""
    return (
        SanitizationStep(
            "Purge",
            "Cryptographic Erase",
            f"destroyed {keys_destroyed} key-encryption key(s) and every keyring backup "
            "known to the archive; all data keys were wrapped by them",
        ),
        SanitizationStep(
            "Clear",
            "Delete ciphertext and destroy volume header",
            f"deleted {files_deleted} encrypted file(s); destroyed {volume}",
        ),
    )


@dataclass(frozen=True)
class WipeCertificate:
    certificate_id: str
    performed_by: Person
    media: tuple[Media, ...]
    steps: tuple[SanitizationStep, ...]
    tool: Tool
    verification: Verification
    sanitized_at: datetime
    validated_by: Person
    decision_reference: str
    post_sanitization_classification: str = "Unclassified (no recoverable data)"
    post_sanitization_destination: str = "Retained by the School; hardware may be re-used"
    notes: str = ""
    workstation_attestations: tuple[dict[str, object], ...] = field(default=())

    def __post_init__(self) -> None:
        _need(self.certificate_id, "an identifier")
        _need(self.decision_reference, "the Board decision it carries out")
        ts(self.sanitized_at, "sanitized_at")
        if not self.media:
            raise CertificateError("the certificate must list the media sanitized.")
        if len(self.steps) < 2 or (self.steps[0].method_type, self.steps[0].method_used) != (
            "Purge",
            "Cryptographic Erase",
        ):
            raise CertificateError(
                "sanitization must start with a Purge by Cryptographic Erase, then a Clear."
            )
        if not any(s.method_type == "Clear" for s in self.steps[1:]):
            raise CertificateError("a Clear step must follow the cryptographic erase.")

    def to_dict(self) -> dict[str, object]:
        body = asdict(self)
        body["sanitized_at"] = ts(self.sanitized_at, "sanitized_at")
        body["media"] = [asdict(m) for m in self.media]
        body["steps"] = [asdict(s) for s in self.steps]
        body["workstation_attestations"] = [dict(a) for a in self.workstation_attestations]
        return {"format": FORMAT, "version": FORMAT_VERSION, **body}

    def to_json_bytes(self) -> bytes:
        """The canonical bytes that are hashed and signed."""
        return canonical_json(self.to_dict())

    def render_text(self) -> str:
        """The certificate as a person reads and signs it (NIST SP 800-88 layout)."""
        p, v = self.performed_by, self.validated_by
        lines = [
            "CERTIFICATE OF SANITIZATION",
            "(fields of NIST SP 800-88 Rev. 1, Appendix G)",
            f"Certificate: {self.certificate_id}",
            f"Authority:   {self.decision_reference}",
            "",
            "PERSON PERFORMING SANITIZATION",
            *_person(p),
            "",
            "MEDIA INFORMATION",
        ]
        for n, m in enumerate(self.media, start=1):
            lines += [
                f"  [{n}] Media type:          {m.media_type}",
                f"      Source:              {m.source}",
                f"      Serial / identifier: {m.identifier}",
                f"      Make / model:        {m.make_model or '-'}",
                f"      Classification:      {m.classification}",
                f"      Data backed up:      {m.data_backed_up}",
                f"      Backup location:     {m.backup_location or '-'}",
            ]
        lines += ["", "SANITIZATION DETAILS"]
        for n, s in enumerate(self.steps, start=1):
            lines += [
                f"  Step {n}: method type {s.method_type}; method used {s.method_used}",
                f"          {s.details}",
            ]
        lines += [
            f"  Tool used (and version):      {self.tool.name} {self.tool.version}",
            f"  Verification method:          {self.verification.method}",
            f"  Verification result:          {self.verification.result.upper()}",
            f"                                {self.verification.details}",
            f"  Date of sanitization:         {ts(self.sanitized_at, 'sanitized_at')}",
            f"  Post-sanitization class.:     {self.post_sanitization_classification}",
            f"  Post-sanitization destination:{' ' if self.post_sanitization_destination else ''}"
            f"{self.post_sanitization_destination}",
            f"  Notes: {self.notes or '-'}",
            "",
            "WORKSTATIONS (attested wiped)",
        ]
        if self.workstation_attestations:
            for a in self.workstation_attestations:
                lines.append(
                    f"  {a.get('workstation')}: wiped {a.get('wiped_at')} by "
                    f"{a.get('attested_by')} ({a.get('method')})"
                )
        else:
            lines.append("  none received pulls")
        lines += ["", "VALIDATION", *_person(v), "  Signature: ____________________  Date: ______"]
        return "\n".join(lines) + "\n"


def _person(p: Person) -> list[str]:
    return [
        f"  Name:         {p.name}",
        f"  Title:        {p.title}",
        f"  Organisation: {p.organisation}",
        f"  Location:     {p.location or '-'}",
        f"  Phone:        {p.phone or '-'}",
    ]


@dataclass(frozen=True)
class SignedCertificate:
    payload: bytes
    sha256: str
    signature: bytes
    text: str

    def to_json(self) -> str:
        """The certificate, its hash and its signature, for export with the audit log."""
        return json.dumps(
            {
                "certificate": json.loads(self.payload),
                "sha256": self.sha256,
                "signature_hex": self.signature.hex(),
            },
            indent=2,
            sort_keys=True,
        )


def sign_certificate(
    certificate: WipeCertificate, sign: Callable[[bytes], bytes]
) -> SignedCertificate:
    """Sign the canonical JSON with the caller's key (the vault's audit Ed25519 key).

    Refuses a failed verification, or a validator who is also the performer."""
    if certificate.verification.result != "passed":
        raise CertificateError(
            "verification did not pass; investigate and repeat the wipe before certifying it."
        )
    if person_key(certificate.validated_by.name) == person_key(certificate.performed_by.name):
        raise CertificateError(
            "the person validating the sanitization must not be the person who performed it."
        )
    payload = certificate.to_json_bytes()
    try:
        signature = sign(payload)
    except Exception as exc:  # the hook is external; report without a traceback
        raise CertificateError(
            f"signing the certificate failed ({type(exc).__name__}); unlock the audit key "
            "and try again."
        ) from None
    if not isinstance(signature, bytes | bytearray) or not signature:
        raise CertificateError("the signing hook returned no signature.")
    return SignedCertificate(
        payload, sha256_of(payload), bytes(signature), certificate.render_text()
    )


def media_from(entries: Sequence[dict[str, str]]) -> tuple[Media, ...]:
    """Media rows from plain dicts (as the vault reports keys and volumes)."""
    return tuple(Media(**e) for e in entries)

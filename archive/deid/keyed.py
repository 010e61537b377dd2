"""Keyed hashes: pseudonymous patient IDs, new UIDs and per-patient date offsets.

Everything is HMAC-SHA256 under the pseudonym key, with a distinct label per use, so
the same source value always maps to the same output (a study sent twice lands as one
study) while nobody without the key can go back or test a guess.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

DICOM_ROOT = "1.2.840.10008."


@dataclass(frozen=True)
class DeidSecrets:
    """The 32-byte pseudonym key (from the keyring) and a per-key UID cache."""

    pseudonym_key: bytes
    _uid_cache: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.pseudonym_key, bytes) or len(self.pseudonym_key) != 32:
            raise ValueError("pseudonym_key must be exactly 32 bytes")

    def __repr__(self) -> str:  # never print the key
        return "DeidSecrets(<hidden>)"


def _mac(secrets: DeidSecrets, label: bytes, value: str) -> bytes:
    return hmac.new(
        secrets.pseudonym_key, label + b"\x00" + value.encode(), hashlib.sha256
    ).digest()


def pseudonym_for(issuer: str, patient_id: str, secrets: DeidSecrets) -> str:
    """Pseudonymous Patient ID: keyed hash of (issuer, source ID) - never of patient data."""
    digest = _mac(secrets, b"patient-id", issuer.strip() + "\x00" + patient_id.strip())
    return "ANON" + base64.b32encode(digest[:15]).decode("ascii")  # 24 chars, fits LO


def map_uid(uid: str, secrets: DeidSecrets) -> str:
    """Consistent 2.25 UID (RFC 4122 variant, version 8) for an instance UID; DICOM
    well-known UIDs (under 1.2.840.10008) stay as they are."""
    if not uid or uid.startswith(DICOM_ROOT):
        return uid
    cache = secrets._uid_cache
    out = cache.get(uid)
    if out is None:
        b = bytearray(_mac(secrets, b"uid", uid)[:16])
        b[6] = (b[6] & 0x0F) | 0x80
        b[8] = (b[8] & 0x3F) | 0x80
        out = "2.25." + str(int.from_bytes(b, "big"))
        if len(cache) > 100_000:
            cache.clear()
        cache[uid] = out
    return out


def date_offset_days(pseudonym: str, secrets: DeidSecrets, lo: int, hi: int) -> int:
    """One whole-day offset per patient, in [lo, hi], from a keyed hash of the pseudonym."""
    n = int.from_bytes(_mac(secrets, b"date-offset", pseudonym)[:8], "big")
    return lo + n % (hi - lo + 1)

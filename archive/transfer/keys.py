"""The archive's two transfer keys, derived from its keyring (FORMAT.md section 1).

Both come from the keyring's pseudonym key by HKDF-SHA-256 with their own info string,
so no new key file exists: they live and die with the keyring (a wipe destroys them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pyrage
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SIGNING_INFO = b"ta-transfer/v1 ed25519"
IDENTITY_INFO = b"ta-transfer/v1 x25519"

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _derive(root: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(root)


def _polymod(values: list[int]) -> int:
    generator = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= generator[i] if ((top >> i) & 1) else 0
    return chk


def bech32_encode(hrp: str, data: bytes) -> str:
    """BIP-173 bech32 of 8-bit `data` (age's key encoding)."""
    acc = bits = 0
    five: list[int] = []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            five.append((acc >> bits) & 31)
    if bits:
        five.append((acc << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    polymod = _polymod(expanded + five + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in five + checksum)


def fingerprint(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:32]


def public_key_from_hex(text: str) -> Ed25519PublicKey:
    raw = bytes.fromhex(text.strip())
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes (64 hex digits)")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_signature(public_hex: str, signature_hex: str, message: bytes) -> bool:
    try:
        public_key_from_hex(public_hex).verify(bytes.fromhex(signature_hex.strip()), message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class TransferKeys:
    signing_key: Ed25519PrivateKey
    identity: pyrage.x25519.Identity

    @property
    def signing_public_raw(self) -> bytes:
        return self.signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def signing_public_hex(self) -> str:
        return self.signing_public_raw.hex()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.signing_public_raw)

    @property
    def recipient(self) -> str:
        return str(self.identity.to_public())

    def sign(self, message: bytes) -> str:
        return self.signing_key.sign(message).hex()

    def __repr__(self) -> str:  # never print key material
        return f"TransferKeys(fingerprint={self.fingerprint!r})"


def transfer_keys(keyring) -> TransferKeys:
    """The archive's transfer keys from its open keyring."""
    root = keyring.pseudonym_key
    seed = _derive(root, SIGNING_INFO)
    secret = _derive(root, IDENTITY_INFO)
    identity = pyrage.x25519.Identity.from_str(bech32_encode("age-secret-key-", secret).upper())
    return TransferKeys(Ed25519PrivateKey.from_private_bytes(seed), identity)

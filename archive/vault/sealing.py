"""Passphrase sealing of the keyring payload (FORMAT.md section 4).

Argon2id turns the passphrase into 64 bytes: the first half seals the payload with
AES-256-GCM, the second half is stored as a check value. The check lets us tell a
wrong passphrase from a damaged file, which matter to the operator: one means "fix
the passphrase file", the other "restore a backup".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from archive.vault.errors import (
    KeyringCorruptError,
    KeyringError,
    KeyringMissingError,
    KeyringPassphraseError,
)

KEYRING_FORMAT = "teaching-archive-keyring"
BACKUP_FORMAT = "teaching-archive-keyring-backup"
SEAL_VERSION = 1
MIN_PASSPHRASE_CHARS = 12


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. The defaults follow RFC 9106's second recommended option (64 MiB)."""

    time_cost: int = 3
    memory_cost: int = 64 * 1024  # KiB
    parallelism: int = 2

    def validate(self) -> None:
        if not (
            1 <= self.time_cost <= 64
            and 8 <= self.memory_cost <= 4 * 1024 * 1024
            and 1 <= self.parallelism <= 16
        ):
            raise KeyringCorruptError("keyring KDF parameters are out of range")


@dataclass(frozen=True)
class Sealer:
    """A derived sealing key with the parameters and salt it came from."""

    kdf: KdfParams
    salt: bytes
    key: bytes
    check: bytes

    @classmethod
    def derive(cls, passphrase: str, kdf: KdfParams, salt: bytes | None = None) -> Sealer:
        salt = salt if salt is not None else os.urandom(16)
        raw = hash_secret_raw(
            secret=passphrase.encode("utf-8"),
            salt=salt,
            time_cost=kdf.time_cost,
            memory_cost=kdf.memory_cost,
            parallelism=kdf.parallelism,
            hash_len=64,
            type=Type.ID,
        )
        return cls(kdf=kdf, salt=salt, key=raw[:32], check=raw[32:])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, field: str, length: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{field} is not a string")
    data = base64.b64decode(value.encode("ascii"), validate=True)
    if length is not None and len(data) != length:
        raise ValueError(f"{field} has the wrong length")
    return data


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _kdf_dict(sealer: Sealer) -> dict[str, Any]:
    return {
        "name": "argon2id",
        "time_cost": sealer.kdf.time_cost,
        "memory_cost": sealer.kdf.memory_cost,
        "parallelism": sealer.kdf.parallelism,
        "salt": _b64(sealer.salt),
    }


def check_passphrase_strength(passphrase: str, what: str = "passphrase") -> None:
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise KeyringError(
            f"The {what} is too short ({len(passphrase)} characters); use at least "
            f"{MIN_PASSPHRASE_CHARS}, e.g. several random words."
        )


def seal(payload: dict[str, Any], sealer: Sealer, fmt: str) -> bytes:
    """The outer JSON document for `payload` sealed under `sealer`."""
    kdf = _kdf_dict(sealer)
    aad = _canonical({"format": fmt, "version": SEAL_VERSION, "kdf": kdf})
    nonce = os.urandom(12)
    ciphertext = AESGCM(sealer.key).encrypt(nonce, _canonical(payload), aad)
    doc: dict[str, Any] = {
        "format": fmt,
        "version": SEAL_VERSION,
        "kdf": kdf,
        "check": _b64(sealer.check),
        "nonce": _b64(nonce),
        "ciphertext": _b64(ciphertext),
    }
    doc["checksum"] = hashlib.sha256(_canonical(doc)).hexdigest()
    return json.dumps(doc, indent=1, sort_keys=True).encode("ascii") + b"\n"


def read_sealed(path: Path, what: str, restore_hint: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyringMissingError(f"No {what} at {path}. {restore_hint}") from None
    except IsADirectoryError:
        raise KeyringCorruptError(f"{path} is a directory, not a {what}. {restore_hint}") from None
    except PermissionError:
        raise KeyringError(
            f"Cannot read the {what} at {path} (permission denied); run as the archive's user."
        ) from None


@dataclass(frozen=True)
class _Parsed:
    kdf: KdfParams
    kdf_raw: dict[str, Any]
    salt: bytes
    check: bytes
    nonce: bytes
    ciphertext: bytes


def _parse(raw: bytes, fmt: str, corrupt: Any) -> _Parsed:
    try:
        doc = json.loads(raw.decode("utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except (UnicodeDecodeError, ValueError):
        raise corrupt("not a JSON document") from None
    if doc.get("format") == BACKUP_FORMAT and fmt == KEYRING_FORMAT:
        raise KeyringCorruptError(
            "This file is a keyring backup, not a keyring; turn it back into a keyring with: "
            "archive keys restore --home HOME --backup FILE"
        )
    if doc.get("format") != fmt:
        raise corrupt(f"format is {doc.get('format')!r}, expected {fmt!r}")
    if doc.get("version") != SEAL_VERSION:
        raise corrupt(f"unsupported version {doc.get('version')!r}")
    checksum = doc.pop("checksum", None)
    if not isinstance(checksum, str) or not hmac.compare_digest(
        checksum, hashlib.sha256(_canonical(doc)).hexdigest()
    ):
        raise corrupt("checksum mismatch")
    try:
        kdf_raw = doc["kdf"]
        if kdf_raw.get("name") != "argon2id":
            raise ValueError("unknown KDF")
        kdf = KdfParams(
            time_cost=int(kdf_raw["time_cost"]),
            memory_cost=int(kdf_raw["memory_cost"]),
            parallelism=int(kdf_raw["parallelism"]),
        )
        kdf.validate()
        return _Parsed(
            kdf=kdf,
            kdf_raw=kdf_raw,
            salt=_unb64(kdf_raw["salt"], "salt", 16),
            check=_unb64(doc["check"], "check", 32),
            nonce=_unb64(doc["nonce"], "nonce", 12),
            ciphertext=_unb64(doc["ciphertext"], "ciphertext"),
        )
    except (KeyError, TypeError, ValueError, AttributeError, KeyringCorruptError):
        raise corrupt("missing or malformed fields") from None


def _open(parsed: _Parsed, sealer: Sealer, fmt: str, corrupt: Any) -> dict[str, Any]:
    aad = _canonical({"format": fmt, "version": SEAL_VERSION, "kdf": parsed.kdf_raw})
    try:
        plain = AESGCM(sealer.key).decrypt(parsed.nonce, parsed.ciphertext, aad)
        payload = json.loads(plain)
        if not isinstance(payload, dict):
            raise ValueError("payload is not an object")
    except (InvalidTag, ValueError):
        raise corrupt("sealed payload does not authenticate") from None
    return payload


def _corrupt_factory(path: Path, what: str, restore_hint: str) -> Any:
    def corrupt(reason: str) -> KeyringCorruptError:
        return KeyringCorruptError(
            f"The {what} at {path} is corrupt ({reason}); nothing was changed. {restore_hint}"
        )

    return corrupt


def unseal(
    raw: bytes, passphrase: str, fmt: str, path: Path, what: str, restore_hint: str
) -> tuple[dict[str, Any], Sealer]:
    """Open a sealed document; raise the KeyringError subclass that says what to do."""
    corrupt = _corrupt_factory(path, what, restore_hint)
    parsed = _parse(raw, fmt, corrupt)
    sealer = Sealer.derive(passphrase, parsed.kdf, parsed.salt)
    if not hmac.compare_digest(sealer.check, parsed.check):
        raise KeyringPassphraseError(
            f"Wrong passphrase for the {what} at {path}; nothing was changed. Check the "
            f"passphrase file or systemd credential named in archive.toml [keyring], or "
            f"type it again."
        )
    return _open(parsed, sealer, fmt, corrupt), sealer


def unseal_with(
    raw: bytes, sealer: Sealer, fmt: str, path: Path, what: str, restore_hint: str
) -> dict[str, Any] | None:
    """Re-open with an already derived key; None if the file was re-sealed under another
    passphrase or parameters (then the caller needs the passphrase again)."""
    corrupt = _corrupt_factory(path, what, restore_hint)
    parsed = _parse(raw, fmt, corrupt)
    if parsed.salt != sealer.salt or parsed.kdf != sealer.kdf or parsed.check != sealer.check:
        return None
    return _open(parsed, sealer, fmt, corrupt)


__all__ = [
    "BACKUP_FORMAT",
    "KEYRING_FORMAT",
    "KdfParams",
    "Sealer",
    "check_passphrase_strength",
    "read_sealed",
    "seal",
    "unseal",
    "unseal_with",
]

"""The keyring: KEKs (rotated), the pseudonymisation key, the audit signing key.

It lives in HOME/keys, outside the data directory, sealed under a passphrase
(sealing.py). Destroying this file and its backups is what makes every encrypted copy
unreadable at closure, so key material exists nowhere else on disk.

Mutations that other data depends on (rotate, retire) are saved at once: a file
wrapped under a KEK that was never saved would be lost after a crash.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from archive.vault.errors import KeyringCorruptError, KeyringError
from archive.vault.fsutil import atomic_write, ensure_private_dir
from archive.vault.sealing import (
    KEYRING_FORMAT,
    KdfParams,
    Sealer,
    check_passphrase_strength,
    read_sealed,
    seal,
    unseal,
    unseal_with,
)

KEYRING_FILENAME = "keyring.json"
KEY_ID_LEN = 16
PAYLOAD_VERSION = 1
_RESTORE_HINT = (
    "Restore it with: archive keys restore --home HOME --backup FILE, or create a new one "
    "with: archive keys init --home HOME (only for an archive that holds no data yet)."
)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, length: int) -> bytes:
    data = base64.b64decode(str(value).encode("ascii"), validate=True)
    if len(data) != length:
        raise ValueError("wrong key length")
    return data


def keyring_path(keys_dir: Path) -> Path:
    return keys_dir / KEYRING_FILENAME


class Keyring:
    """Open keyring; obtain one with `Keyring.create` or `Keyring.open`."""

    def __init__(self, path: Path, payload: dict[str, Any], sealer: Sealer):
        self._path = path
        self._sealer = sealer
        self._lock = threading.RLock()
        self._follow = False
        self._load_payload(payload)
        self._stamp = self._file_stamp()

    # ----- construction -------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, passphrase: str, *, kdf: KdfParams | None = None) -> Keyring:
        """Make a new keyring at `path`; refuses to overwrite an existing one."""
        path = Path(path)
        if path.exists():
            raise KeyringError(
                f"A keyring already exists at {path}; refusing to overwrite it (that would "
                f"make every encrypted file unreadable). Use archive keys rotate instead."
            )
        check_passphrase_strength(passphrase, "keyring passphrase")
        ensure_private_dir(path.parent)
        sealer = Sealer.derive(passphrase, kdf or KdfParams())
        first = _new_key_id(set())
        payload = {
            "version": PAYLOAD_VERSION,
            "created": _now(),
            "primary": first,
            "keks": {first: {"key": _b64(os.urandom(32)), "created": _now()}},
            "retired": {},
            "rotation_pending": None,
            "pseudonym_key": _b64(os.urandom(32)),
            "audit_signing_key": _b64(os.urandom(32)),
            "volume_secret": _b64(os.urandom(32)),
        }
        ring = cls(path, payload, sealer)
        ring._write(exclusive=True)
        return ring

    @classmethod
    def open(cls, path: Path, passphrase: str) -> Keyring:
        """Open an existing keyring; never writes anything."""
        path = Path(path)
        raw = read_sealed(path, "keyring", _RESTORE_HINT)
        payload, sealer = unseal(raw, passphrase, KEYRING_FORMAT, path, "keyring", _RESTORE_HINT)
        try:
            return cls(path, payload, sealer)
        except (KeyError, ValueError, TypeError):
            raise KeyringCorruptError(
                f"The keyring at {path} opened but its contents are malformed; nothing was "
                f"changed. {_RESTORE_HINT}"
            ) from None

    @classmethod
    def from_payload(cls, path: Path, payload: dict[str, Any], sealer: Sealer) -> Keyring:
        """Build from a decrypted payload (restore); validates it like `open`."""
        return cls(Path(path), payload, sealer)

    def _load_payload(self, payload: dict[str, Any]) -> None:
        if payload.get("version") != PAYLOAD_VERSION:
            raise ValueError("unsupported payload version")
        keks = {str(k): _unb64(v["key"], 32) for k, v in payload["keks"].items()}
        created = {str(k): str(v["created"]) for k, v in payload["keks"].items()}
        primary = str(payload["primary"])
        if primary not in keks or any(len(k) != KEY_ID_LEN for k in keks):
            raise ValueError("bad key ids")
        retired = {str(k): str(v) for k, v in payload.get("retired", {}).items()}
        pending = payload.get("rotation_pending")
        secrets_ = (
            _unb64(payload["pseudonym_key"], 32),
            _unb64(payload["audit_signing_key"], 32),
            _unb64(payload["volume_secret"], 32),
        )
        # Assign only once everything parsed, so a bad reload leaves the old state.
        self._created = str(payload["created"])
        self._keks = keks
        self._kek_created = created
        self._primary = primary
        self._retired = retired
        self._rotation_pending = str(pending) if pending else None
        self._pseudonym_key, self._audit_raw, self._volume_secret = secrets_

    def payload(self) -> dict[str, Any]:
        """The sealed JSON payload (FORMAT.md 4.3); contains key material."""
        with self._lock:
            return {
                "version": PAYLOAD_VERSION,
                "created": self._created,
                "primary": self._primary,
                "keks": {
                    k: {"key": _b64(v), "created": self._kek_created[k]}
                    for k, v in self._keks.items()
                },
                "retired": dict(self._retired),
                "rotation_pending": self._rotation_pending,
                "pseudonym_key": _b64(self._pseudonym_key),
                "audit_signing_key": _b64(self._audit_raw),
                "volume_secret": _b64(self._volume_secret),
            }

    # ----- persistence --------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def keys_dir(self) -> Path:
        return self._path.parent

    def save(self) -> None:
        """Write the keyring atomically (0600) under the same passphrase-derived key."""
        self._write(exclusive=False)

    def _write(self, *, exclusive: bool) -> None:
        with self._lock:
            data = seal(self.payload(), self._sealer, KEYRING_FORMAT)
            if exclusive and self._path.exists():
                raise KeyringError(f"A keyring appeared at {self._path}; refusing to overwrite.")
            atomic_write(self._path, data, mode=0o600)
            self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def change_passphrase(self, new_passphrase: str, *, kdf: KdfParams | None = None) -> None:
        check_passphrase_strength(new_passphrase, "keyring passphrase")
        with self._lock:
            self._sealer = Sealer.derive(new_passphrase, kdf or self._sealer.kdf)
            self.save()

    def refresh(self) -> bool:
        """Reload the file if another process changed it (e.g. a rotation run by the CLI
        while Orthanc keeps this keyring open). Returns whether anything was reloaded."""
        with self._lock:
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return False
            raw = read_sealed(self._path, "keyring", _RESTORE_HINT)
            payload = unseal_with(
                raw, self._sealer, KEYRING_FORMAT, self._path, "keyring", _RESTORE_HINT
            )
            if payload is None:
                raise KeyringError(
                    f"The keyring at {self._path} was re-sealed under another passphrase; "
                    f"restart this process so it asks for the new one."
                )
            try:
                self._load_payload(payload)
            except (KeyError, ValueError, TypeError):
                raise KeyringCorruptError(
                    f"The keyring at {self._path} changed on disk and its contents are "
                    f"malformed. {_RESTORE_HINT}"
                ) from None
            self._stamp = stamp
            return True

    def follow_changes(self, on: bool = True) -> None:
        """Keep a long-lived keyring (the Orthanc plugin's) in step with the file.

        When on, every read of the primary key id re-checks the file (one stat; reloaded
        only when it changed), and an unknown key id triggers a reload before it counts as
        unknown. So a rotation run by `archive keys rotate` while the archive serves makes
        new writes use the new primary at once, and rewrapped headers read at once."""
        self._follow = on

    # ----- keys ---------------------------------------------------------------------

    @property
    def primary_kek_id(self) -> str:
        if self._follow:
            self.refresh()
        return self._primary

    def kek(self, key_id: str) -> bytes:
        """Material of a live KEK; KeyringError for retired or unknown ids."""
        with self._lock:
            material = self._keks.get(key_id)
            if material is None and self._follow and self.refresh():
                material = self._keks.get(key_id)
            if material is not None:
                return material
            if key_id in self._retired:
                raise KeyringError(
                    f"Key {key_id} was retired on {self._retired[key_id]}, but a file still "
                    f"needs it (it was not rewrapped). Restore that key from a keyring backup "
                    f"and run archive keys rotate again."
                )
            raise KeyringError(f"Key {key_id!r} is not in this keyring.")

    def knows(self, key_id: str) -> bool:
        """Whether the id was ever issued by this keyring (live or retired)."""
        if key_id in self._keks or key_id in self._retired:
            return True
        if self._follow and self.refresh():
            return key_id in self._keks or key_id in self._retired
        return False

    def is_retired(self, key_id: str) -> bool:
        return key_id in self._retired

    def kek_ids(self) -> list[str]:
        """Live KEK ids, oldest first."""
        with self._lock:
            return sorted(self._keks, key=lambda k: (self._kek_created[k], k))

    def retired_ids(self) -> dict[str, str]:
        return dict(self._retired)

    def kek_created(self, key_id: str) -> str:
        return self._kek_created[key_id]

    @property
    def rotation_pending(self) -> str | None:
        """Primary KEK id of a rotation whose rewrap has not finished, else None."""
        return self._rotation_pending

    def rotate(self, *, pending: bool = False) -> str:
        """Make a new primary KEK (saved at once); old KEKs stay until retired."""
        with self._lock:
            new_id = _new_key_id(set(self._keks) | set(self._retired))
            self._keks[new_id] = os.urandom(32)
            self._kek_created[new_id] = _now()
            self._primary = new_id
            self._rotation_pending = new_id if pending else None
            self.save()
            return new_id

    def finish_rotation(self) -> None:
        with self._lock:
            if self._rotation_pending is not None:
                self._rotation_pending = None
                self.save()

    def retire(self, key_id: str) -> None:
        """Destroy a KEK's material (saved at once). The caller must have checked that
        no file still names it; rotate_and_rewrap does."""
        with self._lock:
            if key_id == self._primary:
                raise KeyringError(
                    f"Key {key_id} is the primary key and cannot be retired; rotate first."
                )
            if key_id not in self._keks:
                if key_id in self._retired:
                    return
                raise KeyringError(f"Key {key_id!r} is not in this keyring.")
            del self._keks[key_id]
            del self._kek_created[key_id]
            self._retired[key_id] = _now()
            self.save()

    @property
    def pseudonym_key(self) -> bytes:
        """32-byte key for consistent pseudonyms; never rotated."""
        return self._pseudonym_key

    @property
    def audit_signing_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self._audit_raw)

    @property
    def audit_public_key_bytes(self) -> bytes:
        return self.audit_signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def volume_secret(self) -> str:
        """Password of the gocryptfs volume: random, so it lives and dies with the keyring."""
        return base64.urlsafe_b64encode(self._volume_secret).decode("ascii").rstrip("=")

    @property
    def created(self) -> str:
        return self._created

    def __repr__(self) -> str:  # never print key material
        return f"Keyring(path={str(self._path)!r}, primary={self._primary!r})"


def _new_key_id(taken: set[str]) -> str:
    while True:
        key_id = f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"
        if key_id not in taken:
            return key_id


def check_private_file(path: Path, what: str) -> None:
    """Refuse a secret file that other users can read."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyringError(
            f"The {what} {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
        )

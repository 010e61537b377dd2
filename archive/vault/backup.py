"""Keyring backups, sealed under a separate recovery passphrase, and their registry.

The registry (HOME/keys/backups.json) lists every backup the archive wrote, so that
closure can find and destroy all copies of the keys: destroying keys only makes data
unreadable if no forgotten copy survives.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from archive.vault.errors import KeyringError
from archive.vault.fsutil import atomic_write, ensure_private_dir
from archive.vault.keyring import Keyring
from archive.vault.sealing import (
    BACKUP_FORMAT,
    KdfParams,
    Sealer,
    check_passphrase_strength,
    read_sealed,
    seal,
    unseal,
)

REGISTRY_FILENAME = "backups.json"
_HINT = "Check the path, or use another backup."


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    primary_kek_id: str
    kek_ids: list[str]
    created: str
    covers_current: bool | None  # None when no current keyring was given
    missing_kek_ids: list[str]

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "primary_kek_id": self.primary_kek_id,
            "kek_ids": self.kek_ids,
            "keyring_created": self.created,
            "covers_current": self.covers_current,
            "missing_kek_ids": self.missing_kek_ids,
        }


def _registry_path(keys_dir: Path) -> Path:
    return Path(keys_dir) / REGISTRY_FILENAME


def _load_registry(keys_dir: Path) -> list[dict[str, str]]:
    path = _registry_path(keys_dir)
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["backups"]
        if not isinstance(entries, list):
            raise ValueError
        return [dict(e) for e in entries]
    except (ValueError, KeyError, TypeError):
        raise KeyringError(
            f"The backup registry {path} is damaged; fix or remove it after listing your "
            f"keyring backups by hand (closure needs the list)."
        ) from None


def _record(keys_dir: Path, dest: Path, digest: str) -> None:
    entries = [e for e in _load_registry(keys_dir) if e.get("path") != str(dest)]
    entries.append({"path": str(dest), "created": datetime.now(UTC).isoformat(), "sha256": digest})
    body = json.dumps({"version": 1, "backups": entries}, indent=1) + "\n"
    atomic_write(_registry_path(keys_dir), body.encode("utf-8"), mode=0o600)


def known_backup_locations(keys_dir: Path) -> list[Path]:
    """Every keyring backup the archive ever wrote (whether or not it still exists)."""
    return [Path(e["path"]) for e in _load_registry(keys_dir) if "path" in e]


def backup_keyring(
    keyring: Keyring,
    dest: Path,
    recovery_passphrase: str,
    *,
    kdf: KdfParams | None = None,
    passphrase: str | None = None,
) -> Path:
    """Write a backup of `keyring` to `dest`, sealed under `recovery_passphrase`.

    `passphrase`, if given, is the keyring passphrase; a recovery passphrase equal to
    it is refused (one leaked secret must not open both)."""
    check_passphrase_strength(recovery_passphrase, "recovery passphrase")
    if passphrase is not None and passphrase == recovery_passphrase:
        raise KeyringError(
            "The recovery passphrase must differ from the keyring passphrase; choose "
            "another one and store it apart (e.g. sealed envelope in the School's safe)."
        )
    dest = Path(dest).expanduser().resolve()
    if dest.is_dir():
        dest = dest / f"keyring-backup-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    if not dest.parent.exists():
        ensure_private_dir(dest.parent)
    sealer = Sealer.derive(recovery_passphrase, kdf or KdfParams())
    data = seal(keyring.payload(), sealer, BACKUP_FORMAT)
    # Record first: a backup that exists but is not listed would survive closure.
    _record(keyring.keys_dir, dest, hashlib.sha256(data).hexdigest())
    atomic_write(dest, data, mode=0o600)
    return dest


def _open_backup(backup: Path, recovery_passphrase: str) -> tuple[dict, Sealer]:
    backup = Path(backup)
    raw = read_sealed(backup, "keyring backup", _HINT)
    return unseal(raw, recovery_passphrase, BACKUP_FORMAT, backup, "keyring backup", _HINT)


def verify_backup(
    backup: Path, recovery_passphrase: str, keyring: Keyring | None = None
) -> BackupInfo:
    """Open a backup and check it holds every live KEK of `keyring` (if given)."""
    payload, sealer = _open_backup(backup, recovery_passphrase)
    try:
        restored = Keyring.from_payload(Path(backup), payload, sealer)
    except (KeyError, ValueError, TypeError):
        raise KeyringError(f"The keyring backup {backup} opened but is malformed.") from None
    ids = restored.kek_ids()
    missing: list[str] = []
    covers: bool | None = None
    if keyring is not None:
        missing = [
            k for k in keyring.kek_ids() if k not in ids or restored.kek(k) != keyring.kek(k)
        ]
        covers = not missing and restored.pseudonym_key == keyring.pseudonym_key
    return BackupInfo(
        path=Path(backup),
        primary_kek_id=restored.primary_kek_id,
        kek_ids=ids,
        created=restored.created,
        covers_current=covers,
        missing_kek_ids=missing,
    )


def restore_keyring(
    backup: Path,
    recovery_passphrase: str,
    dest: Path,
    new_passphrase: str,
    *,
    kdf: KdfParams | None = None,
) -> Keyring:
    """Write the backup's keys as a new keyring at `dest` under `new_passphrase`.

    Refuses to overwrite an existing keyring: move it aside first, deliberately."""
    dest = Path(dest)
    if dest.exists():
        raise KeyringError(
            f"A keyring already exists at {dest}; move it aside first if you really mean to "
            f"replace it (its keys may be newer than the backup's)."
        )
    check_passphrase_strength(new_passphrase, "new keyring passphrase")
    payload, _ = _open_backup(backup, recovery_passphrase)
    ensure_private_dir(dest.parent)
    sealer = Sealer.derive(new_passphrase, kdf or KdfParams())
    try:
        ring = Keyring.from_payload(dest, payload, sealer)
    except (KeyError, ValueError, TypeError):
        raise KeyringError(f"The keyring backup {backup} opened but is malformed.") from None
    ring.save()
    return ring

"""Encryption at rest: keyring, envelope-encrypted files, rotation, encrypted volume.

The file format is specified in FORMAT.md next to this file. Small safe entry points
are re-exported here; the modules hold the details.
"""

from archive.vault.backup import (
    BackupInfo,
    backup_keyring,
    known_backup_locations,
    restore_keyring,
    verify_backup,
)
from archive.vault.envelope import (
    Header,
    decrypt_bytes,
    decrypt_file,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    read_header,
    rewrap,
)
from archive.vault.errors import (
    KeyringCorruptError,
    KeyringError,
    KeyringMissingError,
    KeyringPassphraseError,
    TamperError,
    VolumeError,
)
from archive.vault.keyring import Keyring, keyring_path
from archive.vault.passphrase import obtain_passphrase, open_keyring_for_cli
from archive.vault.rotation import RotationReport, key_usage, rotate_and_rewrap
from archive.vault.sealing import KdfParams
from archive.vault.store import CleanupReport, EncryptedStore
from archive.vault.volume import VolumeStatus

__all__ = [
    "BackupInfo",
    "CleanupReport",
    "EncryptedStore",
    "Header",
    "KdfParams",
    "Keyring",
    "KeyringCorruptError",
    "KeyringError",
    "KeyringMissingError",
    "KeyringPassphraseError",
    "RotationReport",
    "TamperError",
    "VolumeError",
    "VolumeStatus",
    "backup_keyring",
    "decrypt_bytes",
    "decrypt_file",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_stream",
    "key_usage",
    "keyring_path",
    "known_backup_locations",
    "obtain_passphrase",
    "open_keyring_for_cli",
    "read_header",
    "restore_keyring",
    "rewrap",
    "rotate_and_rewrap",
    "verify_backup",
]

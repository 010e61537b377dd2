"""Encrypted, incremental backups of an archive home, their registry, and restore.

    from archive.backup import create_backup, list_backups, verify_backup, restore_backup

Backups need a stopped archive (Orthanc holds its SQLite index exclusively); see
FORMAT.md in this folder for the on-disk layout and the consistency argument.
"""

from archive.backup.registry import known_data_backup_locations, record_backup_location
from archive.backup.restore import RestoreResult, read_back, restore_backup
from archive.backup.snapshot import (
    BackupResult,
    VerifyResult,
    create_backup,
    list_backups,
    resolve,
    verify_backup,
)

__all__ = [
    "BackupResult",
    "RestoreResult",
    "VerifyResult",
    "create_backup",
    "known_data_backup_locations",
    "list_backups",
    "read_back",
    "record_backup_location",
    "resolve",
    "restore_backup",
    "verify_backup",
]

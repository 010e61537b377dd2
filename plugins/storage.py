"""Storage area: every attachment Orthanc stores goes through the vault's envelope
encryption (archive/vault/attachments.py does the work; this hands it to Orthanc).

A file that fails authentication (flipped bit, swapped header, truncation) is a
security alert: it is logged and audited, and Orthanc answers that one read with an
error while it keeps running. The keyring follows its file (Keyring.follow_changes):
`archive keys rotate` run while the archive serves saves the new primary key first, so
the next write here uses it. Durability per content type: see the domain module.

There is no clear-storage switch here: a benchmark that compares against clear files
registers its own storage area from its own entry file (benchmarks/plugin_entry.py).
"""

from __future__ import annotations

from archive.vault.attachments import DERIVED_CONTENT_TYPES, Log, StorageArea
from archive.vault.store import EncryptedStore

__all__ = ["DERIVED_CONTENT_TYPES", "register", "storage_area"]


def storage_area(orthanc, services) -> StorageArea:
    return StorageArea(
        services.storage,
        services.ledger,
        services.record,
        Log(error=orthanc.LogError, warning=orthanc.LogWarning),
    )


def register(orthanc, services) -> None:
    services.runtime.keyring.follow_changes()
    area = storage_area(orthanc, services)
    quarantine = EncryptedStore(services.home.quarantine_dir, services.runtime.keyring)
    area.clean_crash_leftovers(quarantine)
    area.backfill_ledger()
    orthanc.RegisterStorageArea(area.create, area.read, area.remove)

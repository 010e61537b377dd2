"""Storage area: every attachment Orthanc stores goes through the vault's envelope encryption.

A file that fails authentication (flipped bit, swapped header, truncation) is a
security alert: it is logged and audited, and Orthanc answers that one read with an
error while it keeps running.
"""

from __future__ import annotations

import orthanc

from archive.audit import AuditEvent
from archive.vault.errors import TamperError


def register(services) -> None:
    store = services.storage
    record = services.record

    def create(uuid: str, content_type, data: bytes) -> None:
        store.write(uuid, int(content_type), bytes(data))

    def read(uuid: str, content_type) -> bytes:
        try:
            return store.read(uuid, int(content_type))
        except TamperError as exc:
            orthanc.LogError(f"teaching-archive: SECURITY ALERT: attachment {uuid}: {exc}")
            try:
                record(
                    AuditEvent(
                        action="security.tamper",
                        outcome="failure",
                        actor="system",
                        target=uuid,
                        detail={"content_type": int(content_type)},
                    )
                )
            finally:
                raise

    def remove(uuid: str, content_type) -> None:
        store.remove(uuid, int(content_type))

    orthanc.RegisterStorageArea(create, read, remove)

"""Storage area: every attachment Orthanc stores goes through the vault's envelope encryption.

A file that fails authentication (flipped bit, swapped header, truncation) is a
security alert: it is logged and audited, and Orthanc answers that one read with an
error while it keeps running.

The keyring follows its file (Keyring.follow_changes): `archive keys rotate` run while
the archive serves saves the new primary key first, so the next write here uses it and
a header rewrapped under it reads at once.

Benchmarks only: ARCHIVE_BENCH_PASSTHROUGH_STORAGE=1 at plugin start registers a
pass-through (clear) storage area instead, so bench_crypto.py can compare the same
pipeline with and without encryption. It is loud: an error line in Orthanc's log and a
`security.passthrough_storage` audit record. Never set it on an archive holding data.
"""

from __future__ import annotations

import os
import time

import orthanc

from archive.audit import AuditEvent
from archive.vault.errors import TamperError
from archive.vault.fsutil import atomic_write

PASSTHROUGH_ENV = "ARCHIVE_BENCH_PASSTHROUGH_STORAGE"
_TORN_HEADER_RETRY_S = 0.05


def register(services) -> None:
    if os.environ.get(PASSTHROUGH_ENV) == "1":
        _register_passthrough(services)
        return
    services.runtime.keyring.follow_changes()
    store = services.storage
    record = services.record

    def create(uuid: str, content_type, data: bytes) -> None:
        store.write(uuid, int(content_type), bytes(data))

    def read(uuid: str, content_type) -> bytes:
        ct = int(content_type)
        try:
            return store.read(uuid, ct)
        except TamperError:
            # A rewrap running in `archive keys rotate` rewrites the 116-byte header in
            # place; a read racing it could see a torn header. One retry tells a race
            # from a real alteration, which fails again.
            time.sleep(_TORN_HEADER_RETRY_S)
            try:
                return store.read(uuid, ct)
            except TamperError as exc:
                _alert(record, uuid, ct, exc)
                raise

    def remove(uuid: str, content_type) -> None:
        store.remove(uuid, int(content_type))

    orthanc.RegisterStorageArea(create, read, remove)


def _alert(record, uuid: str, content_type: int, exc: TamperError) -> None:
    orthanc.LogError(
        f"teaching-archive: SECURITY ALERT: stored attachment {uuid} (content type "
        f"{content_type}) failed authentication: {exc.reason}"
    )
    try:
        record(
            AuditEvent(
                action="security.tamper",
                outcome="failure",
                actor="system",
                target=uuid,
                detail={"content_type": content_type, "reason": exc.reason},
            )
        )
    except Exception as audit_exc:  # noqa: BLE001 - the alert must not hide the read error
        orthanc.LogError(f"teaching-archive: could not audit the alert: {audit_exc}")


def _register_passthrough(services) -> None:
    """Clear files in the same layout, for the encrypted-vs-clear pipeline benchmark."""
    root = services.home.storage_dir
    orthanc.LogError(
        "teaching-archive: WARNING: PASS-THROUGH STORAGE AREA (benchmarks only): "
        f"{PASSTHROUGH_ENV}=1, attachments are stored IN CLEAR in {root}"
    )
    services.record(
        AuditEvent(
            action="security.passthrough_storage",
            outcome="success",
            actor="system",
            detail={"storage_dir": str(root), "env": PASSTHROUGH_ENV},
        )
    )

    def path_for(uuid: str, content_type) -> os.PathLike:
        return root / uuid[0:2] / uuid[2:4] / f"{uuid}.{int(content_type)}"

    def create(uuid: str, content_type, data: bytes) -> None:
        path = path_for(uuid, content_type)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, bytes(data))

    def read(uuid: str, content_type) -> bytes:
        with open(path_for(uuid, content_type), "rb") as handle:
            return handle.read()

    def remove(uuid: str, content_type) -> None:
        try:
            os.unlink(path_for(uuid, content_type))
        except FileNotFoundError:
            pass

    orthanc.RegisterStorageArea(create, read, remove)

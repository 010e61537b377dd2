"""Storage area: every attachment Orthanc stores goes through the vault's envelope encryption.

A file that fails authentication (flipped bit, swapped header, truncation) is a
security alert: it is logged and audited, and Orthanc answers that one read with an
error while it keeps running.

The keyring follows its file (Keyring.follow_changes): `archive keys rotate` run while
the archive serves saves the new primary key first, so the next write here uses it and
a header rewrapped under it reads at once.

Durability (issue 3 performance, see ops/BENCHMARKS.md): Orthanc 1.10 writes two
attachments per instance when the storage area cannot read ranges (orthanc-python 4.0
cannot): the DICOM file (content type 1) and "DICOM until pixel data" (type 3, a copy of
the file's first bytes up to the pixel data, used to answer tag queries fast); it has no
option to skip type 3 (it is written iff the area has no range read or compression is
on). Orthanc commits its index right after `create` returns and tells the sender the
instance is stored, so type 1 - and every other type - is durable before `create`
returns (file fsync, rename, directory fsync, and the parent of any shard directory it
created). Type 3 is derived: it is written atomically but without fsync. A process
crash (kill -9) cannot lose it (the page cache survives); only an OS crash or power cut
within the kernel's writeback window (~30 s) can leave it missing or empty, while the
DICOM file it derives from is intact. Orthanc 1.10 does not rebuild it by itself:
reading such an instance's tags then fails with an error (logged, NOT a security
alert: an empty or missing type-3 file is what a power cut leaves, not tampering), and
the instance's file is still served; `archive fsck` reports the type-3 file as missing or
damaged, and `archive fsck --repair` (archive stopped) rebuilds it from the type-1 file
of the same instance, byte-exact against the size and MD5 in Orthanc's index.

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
from archive.vault.envelope import HEADER_LEN
from archive.vault.errors import TamperError
from archive.vault.fsutil import atomic_write
from archive.vault.ledger import DICOM_CONTENT_TYPE, backfill, entry_from_dicom

PASSTHROUGH_ENV = "ARCHIVE_BENCH_PASSTHROUGH_STORAGE"
_TORN_HEADER_RETRY_S = 0.05
# "DICOM until pixel data": derived from the DICOM file, so written without fsync.
DERIVED_CONTENT_TYPES = frozenset({3})


def register(services) -> None:
    if os.environ.get(PASSTHROUGH_ENV) == "1":
        _register_passthrough(services)
        return
    services.runtime.keyring.follow_changes()
    store = services.storage
    record = services.record
    _clean_crash_leftovers(services, store)
    _backfill_ledger(services, store)

    def create(uuid: str, content_type, data: bytes) -> None:
        ct = int(content_type)
        payload = bytes(data)
        if ct == DICOM_CONTENT_TYPE:
            # Parsed before the write: a file the ledger cannot read is refused (the
            # sender is told and can resend) rather than stored where no pull finds it.
            entry = entry_from_dicom(uuid, payload)
        store.write(uuid, ct, payload, durable=ct not in DERIVED_CONTENT_TYPES)
        if ct == DICOM_CONTENT_TYPE:
            try:
                services.ledger().record(entry)
            except BaseException:
                store.remove(uuid, ct)
                raise

    def read(uuid: str, content_type) -> bytes:
        ct = int(content_type)
        try:
            return store.read(uuid, ct)
        except FileNotFoundError:
            if ct in DERIVED_CONTENT_TYPES:
                _derived_lost(uuid, ct)
            raise
        except TamperError:
            if ct in DERIVED_CONTENT_TYPES and _is_power_cut_leftover(store, uuid, ct):
                _derived_lost(uuid, ct)
                raise
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
        ct = int(content_type)
        store.remove(uuid, ct)
        if ct == DICOM_CONTENT_TYPE:
            services.ledger().forget(uuid)

    orthanc.RegisterStorageArea(create, read, remove)


def _backfill_ledger(services, store) -> None:
    """Record the stored DICOM files the instance ledger does not know (archives made
    before it), before Orthanc serves; progress in Orthanc's log."""

    def progress(done: int, total: int) -> None:
        orthanc.LogWarning(f"teaching-archive: instance ledger: {done}/{total} file(s) recorded")

    report = backfill(services.ledger(), store, progress=progress)
    if report.forgotten:
        orthanc.LogWarning(
            f"teaching-archive: instance ledger: {report.forgotten} row(s) without a stored "
            "file forgotten"
        )
    if report.unreadable:
        orthanc.LogError(
            f"teaching-archive: instance ledger: {len(report.unreadable)} stored file(s) could "
            "not be read (first: " + report.unreadable[0] + "); run `archive fsck`."
        )


def _clean_crash_leftovers(services, store) -> None:
    """Before Orthanc writes: remove temporaries a crash left in the storage area and the
    quarantine, and roll interrupted header rewraps forward (EncryptedStore.cleanup_partials)."""
    from archive.vault.store import EncryptedStore

    quarantine = EncryptedStore(services.home.quarantine_dir, services.runtime.keyring)
    for each in (store, quarantine):
        report = each.cleanup_partials()
        if report.removed_partials or report.journals_applied or report.journals_left:
            orthanc.LogWarning(
                f"teaching-archive: crash leftovers in {each.root}: "
                f"{len(report.removed_partials)} temporary file(s) removed, "
                f"{len(report.journals_applied)} rewrap journal(s) applied, "
                f"{len(report.journals_left)} left for `archive fsck`"
            )


def _is_power_cut_leftover(store, uuid: str, content_type: int) -> bool:
    """An unsynced file cut short by an OS crash is empty or shorter than its header."""
    try:
        return store.path_for(uuid, content_type).stat().st_size < HEADER_LEN
    except FileNotFoundError:
        return True


def _derived_lost(uuid: str, content_type: int) -> None:
    orthanc.LogError(
        f"teaching-archive: derived attachment {uuid} (content type {content_type}, DICOM "
        "until pixel data) is missing or empty, as an OS crash before writeback leaves it; "
        "the DICOM file is intact. Stop the archive and run `archive fsck --repair`, "
        "which rebuilds it from the instance's DICOM file."
    )


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

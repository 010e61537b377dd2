"""The storage area's work: every attachment Orthanc stores goes through the vault's
envelope encryption (plugins/storage.py only hands the callbacks to Orthanc).

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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from archive.audit import AuditEvent
from archive.vault.envelope import HEADER_LEN
from archive.vault.errors import TamperError
from archive.vault.ledger import DICOM_CONTENT_TYPE, backfill, entry_from_dicom
from archive.vault.store import EncryptedStore

_TORN_HEADER_RETRY_S = 0.05
# "DICOM until pixel data": derived from the DICOM file, so written without fsync.
DERIVED_CONTENT_TYPES = frozenset({3})


@dataclass
class Log:
    """Where the storage area's lines go (Orthanc's log inside the plugin)."""

    error: Callable[[str], None]
    warning: Callable[[str], None]


class StorageArea:
    """create / read / remove of Orthanc's storage area over the vault and its ledger.

    `ledger` gives the instance ledger on the calling thread's connection; `record`
    appends to the audit log."""

    def __init__(
        self,
        store: EncryptedStore,
        ledger: Callable[[], Any],
        record: Callable[[AuditEvent], Any],
        log: Log,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.record = record
        self.log = log

    def create(self, uuid: str, content_type, data: bytes) -> None:
        ct = int(content_type)
        payload = bytes(data)
        if ct == DICOM_CONTENT_TYPE:
            # Parsed before the write: a file the ledger cannot read is refused (the
            # sender is told and can resend) rather than stored where no pull finds it.
            entry = entry_from_dicom(uuid, payload)
        self.store.write(uuid, ct, payload, durable=ct not in DERIVED_CONTENT_TYPES)
        if ct == DICOM_CONTENT_TYPE:
            try:  # a row that cannot be recorded undoes the write
                self.ledger().record(entry)
            except BaseException:
                self.store.remove(uuid, ct)
                raise

    def read(self, uuid: str, content_type) -> bytes:
        ct = int(content_type)
        try:
            return self.store.read(uuid, ct)
        except FileNotFoundError:
            if ct in DERIVED_CONTENT_TYPES:
                self._derived_lost(uuid, ct)
            raise
        except TamperError:
            if ct in DERIVED_CONTENT_TYPES and self._is_power_cut_leftover(uuid, ct):
                self._derived_lost(uuid, ct)
                raise
            # A rewrap running in `archive keys rotate` rewrites the 116-byte header in
            # place; a read racing it could see a torn header. One retry tells a race
            # from a real alteration, which fails again.
            time.sleep(_TORN_HEADER_RETRY_S)
            try:
                return self.store.read(uuid, ct)
            except TamperError as exc:
                self._alert(uuid, ct, exc)
                raise

    def remove(self, uuid: str, content_type) -> None:
        ct = int(content_type)
        self.store.remove(uuid, ct)
        if ct == DICOM_CONTENT_TYPE:
            self.ledger().forget(uuid)

    # -- at start, before Orthanc writes -------------------------------------------
    def clean_crash_leftovers(self, quarantine: EncryptedStore) -> None:
        """Remove temporaries a crash left in the storage area and the quarantine, and
        roll interrupted header rewraps forward (EncryptedStore.cleanup_partials)."""
        for each in (self.store, quarantine):
            report = each.cleanup_partials()
            if report.removed_partials or report.journals_applied or report.journals_left:
                self.log.warning(
                    f"teaching-archive: crash leftovers in {each.root}: "
                    f"{len(report.removed_partials)} temporary file(s) removed, "
                    f"{len(report.journals_applied)} rewrap journal(s) applied, "
                    f"{len(report.journals_left)} left for `archive fsck`"
                )

    def backfill_ledger(self) -> None:
        """Record the stored DICOM files the instance ledger does not know (archives
        made before it), before Orthanc serves; progress in the log."""

        def progress(done: int, total: int) -> None:
            self.log.warning(f"teaching-archive: instance ledger: {done}/{total} file(s) recorded")

        report = backfill(self.ledger(), self.store, progress=progress)
        if report.forgotten:
            self.log.warning(
                f"teaching-archive: instance ledger: {report.forgotten} row(s) without a "
                "stored file forgotten"
            )
        if report.unreadable:
            self.log.error(
                f"teaching-archive: instance ledger: {len(report.unreadable)} stored file(s) "
                "could not be read (first: " + report.unreadable[0] + "); run `archive fsck`."
            )

    # -- alerts ----------------------------------------------------------------------
    def _is_power_cut_leftover(self, uuid: str, content_type: int) -> bool:
        """An unsynced file cut short by an OS crash is empty or shorter than its header.
        (A row of the database store is committed whole: never such a leftover.)"""
        if getattr(self.store, "root", None) is None:
            return False
        try:
            return self.store.path_for(uuid, content_type).stat().st_size < HEADER_LEN
        except FileNotFoundError:
            return True

    def _derived_lost(self, uuid: str, content_type: int) -> None:
        self.log.error(
            f"teaching-archive: derived attachment {uuid} (content type {content_type}, "
            "DICOM until pixel data) is missing or empty, as an OS crash before writeback "
            "leaves it; the DICOM file is intact. Stop the archive and run `archive fsck "
            "--repair`, which rebuilds it from the instance's DICOM file."
        )

    def _alert(self, uuid: str, content_type: int, exc: TamperError) -> None:
        self.log.error(
            f"teaching-archive: SECURITY ALERT: stored attachment {uuid} (content type "
            f"{content_type}) failed authentication: {exc.reason}"
        )
        try:
            self.record(
                AuditEvent(
                    action="security.tamper",
                    outcome="failure",
                    actor="system",
                    target=uuid,
                    detail={"content_type": content_type, "reason": exc.reason},
                )
            )
        except Exception as audit_exc:  # noqa: BLE001 - the alert must not hide the error
            self.log.error(f"teaching-archive: could not audit the alert: {audit_exc}")

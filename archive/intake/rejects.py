"""Rejected files, sealed: a person reads the reason, fixes the file, drops it again.

A rejected file can be a real patient's study with a wrong transfer syntax, a scanned
form, anything: so it is never kept in clear. Its bytes and its original name (a name
can carry a patient's name) are envelope-encrypted under the archive's keyring in an
EncryptedStore (like the quarantine) below the rejects folder, `<rejects>/sealed`; the
archive database keeps only a random id, the time, the size and the reason in words
chosen here (never the server's text, never anything read from the file).

Personnel list, inspect (decrypt to a new 0600 file) and delete them with
`archive rejects list|show|delete`. Clear rejects left by earlier versions
(`<rejects>/<relative path>` with `.reason.txt` beside it) are sealed and removed by
`migrate_clear` when the watcher starts.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from archive.errors import ArchiveError
from archive.intake.journal import Journal
from archive.vault.store import EncryptedStore

REASON_SUFFIX = ".reason.txt"
SEALED = "sealed"
CONTENT_DATA = 1
CONTENT_NAME = 2
_ID = re.compile(r"^r-[0-9a-f]{24}$")


class RejectError(ArchiveError):
    """No such reject, or it cannot be read; the message says what to do."""


@dataclass(frozen=True)
class Reject:
    id: str
    rejected_at: str
    reason: str
    entry_id: int | None
    size: int
    origin: str  # "watch" or "migrated"

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def reason_path(target: Path) -> Path:
    """Where earlier versions wrote a clear reject's reason (kept for the migration)."""
    return target.with_name(target.name + REASON_SUFFIX)


class RejectStore:
    """Sealed rejects: encrypted bytes + encrypted name under `base/sealed`, records in
    the intake journal's `intake_rejects`."""

    def __init__(self, base: Path, keyring, journal: Journal) -> None:
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.base, 0o700)
        self.files = EncryptedStore(self.base / SEALED, keyring)
        self.journal = journal

    def put(self, data: bytes, name: str, reason: str, entry_id: int | None = None,
            origin: str = "watch") -> str:  # fmt: skip
        """Seal a rejected file (bytes and original relative name) and record it."""
        reject_id = "r-" + secrets.token_hex(12)
        self.files.write(reject_id, CONTENT_DATA, data)
        self.files.write(reject_id, CONTENT_NAME, name.encode("utf-8", "surrogateescape"))
        self.journal.add_reject(reject_id, reason, entry_id, len(data), origin)
        return reject_id

    def list(self) -> list[Reject]:
        return [Reject(**r) for r in self.journal.rejects()]

    def get(self, reject_id: str) -> Reject:
        row = self.journal.reject(reject_id) if _ID.match(reject_id or "") else None
        if row is None:
            raise RejectError(f"no reject {reject_id!r}; see `archive rejects list`.")
        return Reject(**row)

    def read(self, reject_id: str) -> tuple[bytes, str]:
        """(bytes, original name) of a reject, decrypted."""
        self.get(reject_id)
        try:
            data = self.files.read(reject_id, CONTENT_DATA)
            name = self.files.read(reject_id, CONTENT_NAME).decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            raise RejectError(
                f"the sealed file of {reject_id} is missing; delete the record with "
                f"`archive rejects delete {reject_id}`."
            ) from None
        return data, name

    def delete(self, reject_id: str) -> None:
        self.get(reject_id)
        self.files.remove(reject_id, CONTENT_DATA)
        self.files.remove(reject_id, CONTENT_NAME)
        self.journal.drop_reject(reject_id)

    def migrate_clear(self, legacy: Path | None = None) -> int:
        """Seal every clear reject left below `legacy` (default: the base folder) by an
        earlier version, then delete it and its reason file. Links are removed, never
        followed. Returns how many files were sealed."""
        root = Path(legacy or self.base)
        if not root.is_dir() or root.is_symlink():
            return 0
        sealed_root = (self.base / SEALED).resolve()
        done = 0
        for folder, dirs, files in os.walk(root, topdown=True, followlinks=False):
            here = Path(folder)
            if here.resolve() == sealed_root:
                dirs[:] = []
                continue
            dirs[:] = [d for d in dirs if (here / d).resolve() != sealed_root]
            for name in sorted(files):
                if name.endswith(REASON_SUFFIX):
                    continue
                path = here / name
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    path.unlink(missing_ok=True)  # a link or special file: never followed
                    continue
                reason, entry = _legacy_reason(reason_path(path))
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with os.fdopen(fd, "rb") as handle:
                    data = handle.read()
                self.put(data, str(path.relative_to(root)), reason, entry, origin="migrated")
                path.unlink()
                reason_path(path).unlink(missing_ok=True)
                done += 1
        # what is left: reason files of denied files (no data), and empty folders
        for folder, _dirs, files in os.walk(root, topdown=False, followlinks=False):
            here = Path(folder)
            if here.resolve() == sealed_root or sealed_root in here.resolve().parents:
                continue
            for name in files:
                if name.endswith(REASON_SUFFIX):
                    (here / name).unlink(missing_ok=True)
            if here != root and here.resolve() != sealed_root:
                try:
                    here.rmdir()
                except OSError:
                    pass
        return done


def _legacy_reason(path: Path) -> tuple[str, int | None]:
    """The reason and journal id an earlier version wrote (our own words only)."""
    reason, entry = "rejected by an earlier version of the watcher", None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return reason, entry
    for line in text.splitlines():
        if line.startswith("not ingested: "):
            reason = line.removeprefix("not ingested: ")[:200]
        elif line.startswith("intake journal id: "):
            value = line.removeprefix("intake journal id: ").strip()
            entry = int(value) if value.isdigit() else None
    return reason, entry

"""Key rotation: a new primary KEK, every header rewrapped, unused KEKs retired.

Bodies are never rewritten: only the 116-byte headers change (envelope.rewrap), so
rotating a large archive costs one small write per file. The keyring records the
rotation as pending until every file was rewrapped, so a crash mid-way resumes the
same rotation instead of making yet another key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from archive.vault.dbstore import DbEncryptedStore
from archive.vault.envelope import read_header, rewrap
from archive.vault.errors import ArchiveError
from archive.vault.keyring import Keyring
from archive.vault.store import EncryptedStore

Progress = Callable[[int, int, Path], None]


@dataclass
class RotationReport:
    new_primary: str
    resumed: bool
    files: int = 0
    rewrapped: int = 0
    already_current: int = 0
    retired: list[str] = field(default_factory=list)
    still_in_use: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "new_primary": self.new_primary,
            "resumed": self.resumed,
            "files": self.files,
            "rewrapped": self.rewrapped,
            "already_current": self.already_current,
            "retired": self.retired,
            "still_in_use": self.still_in_use,
            "failures": self.failures,
        }


def _stores(stores: EncryptedStore | Iterable[EncryptedStore]) -> list[EncryptedStore]:
    return [stores] if isinstance(stores, EncryptedStore | DbEncryptedStore) else list(stores)


@dataclass(frozen=True)
class _Unit:
    """One encrypted attachment, in a directory (a file) or in the database (a row)."""

    label: Path
    header: Callable[[], object]
    rewrap: Callable[[Keyring], bool]


def _units(store: EncryptedStore | DbEncryptedStore) -> list[_Unit]:
    if isinstance(store, DbEncryptedStore):
        return [
            _Unit(
                Path(f"{uuid}.{ct}"),
                lambda u=uuid, c=ct: store.header(u, c),
                lambda ring, u=uuid, c=ct: store.rewrap(ring, u, c),
            )
            for uuid, ct, _ in store.entries()
        ]
    return [
        _Unit(path, lambda p=path: read_header(p), lambda ring, p=path: rewrap(ring, p))
        for path in store.paths()
    ]


def key_usage(stores: EncryptedStore | Iterable[EncryptedStore]) -> Counter[str]:
    """How many files name each key id (headers only, nothing decrypted)."""
    usage: Counter[str] = Counter()
    for store in _stores(stores):
        for unit in _units(store):
            try:
                usage[unit.header().key_id] += 1  # type: ignore[attr-defined]
            except (ArchiveError, OSError):
                usage["<unreadable>"] += 1
    return usage


def rotate_and_rewrap(
    keyring: Keyring,
    store: EncryptedStore | Iterable[EncryptedStore],
    progress: Progress | None = None,
    *,
    retire: bool = True,
) -> RotationReport:
    """Rotate the primary KEK and rewrap every file of every store given.

    Pass *every* store encrypted with this keyring (storage area, quarantine...): a KEK
    is retired only when no file in any of them names it. Idempotent: rerun after a
    crash to finish. Files that fail are reported and keep their KEK alive."""
    stores = _stores(store)
    for each in stores:
        each.cleanup_partials(older_than=3600)  # finish journals of an interrupted run
    pending = keyring.rotation_pending
    resumed = pending is not None and pending == keyring.primary_kek_id
    new_primary = keyring.primary_kek_id if resumed else keyring.rotate(pending=True)
    report = RotationReport(new_primary=new_primary, resumed=resumed)
    units = [unit for each in stores for unit in _units(each)]
    report.files = len(units)
    for done, unit in enumerate(units, start=1):
        path = unit.label
        try:
            if unit.rewrap(keyring):
                report.rewrapped += 1
            else:
                report.already_current += 1
        except FileNotFoundError:
            report.files -= 1  # removed meanwhile (Orthanc deleted it)
        except (ArchiveError, OSError) as exc:
            report.failures[str(path)] = str(exc)
        if progress is not None:
            progress(done, len(units), path)
    usage = key_usage(stores)
    # Fail closed: a file we could not read or rewrap may still need any old KEK.
    blocked = bool(report.failures or usage.get("<unreadable>"))
    for key_id in keyring.kek_ids():
        if key_id == keyring.primary_kek_id:
            continue
        if usage.get(key_id, 0) or blocked:
            report.still_in_use[key_id] = usage.get(key_id, 0)
        elif retire:
            keyring.retire(key_id)
            report.retired.append(key_id)
    if not blocked:
        keyring.finish_rotation()
    return report

"""The wipe, in the issue's order, and its verification (issue 10).

1. crypto-erase: overwrite then unlink the keyring and every keyring backup the archive
   knows (HOME/keys/backups.json): every KEK dies, so every data key wrapped by one dies;
2. delete the ciphertext (the data directory: storage, index, quarantine, databases);
3. destroy the volume: gocryptfs.conf (its master key, encrypted under the keyring's
   volume secret) and the backing directory. A LUKS volume's header cannot be destroyed
   from here: `plan_volume` names the device so the operator runs `cryptsetup
   luksErase` and destroys any header backup (documented, listed in the certificate).

Before step 1, `sample_headers` keeps a few ciphertext headers (they hold only wrapped
keys) and checks the live keyring unwraps them: a positive control, so "no key unwraps
the sample" afterwards means something. The signing key for the certificate is the
audit key, held in this process's memory only from before step 1 (never written again).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from archive.paths import HomePaths
from archive.vault.backup import known_backup_locations
from archive.vault.envelope import HEADER_LEN, Header, KeySource, _unwrap
from archive.vault.keyring import keyring_path
from archive.vault.shred import delete_tree_files, overwrite_and_unlink
from archive.vault.store import EncryptedStore
from archive.vault.volume import GOCRYPTFS_CONF

DICOM_MAGIC = b"DICM"


@dataclass(frozen=True)
class SampledHeader:
    uuid: str
    content_type: int
    header: bytes


@dataclass
class WipeReport:
    keys_destroyed: list[str] = field(default_factory=list)
    key_files_destroyed: list[str] = field(default_factory=list)
    files_deleted: int = 0
    bytes_deleted: int = 0
    volume: str = "none"

    def as_dict(self) -> dict[str, object]:
        return {
            "keys_destroyed": len(self.keys_destroyed),
            "key_files_destroyed": self.key_files_destroyed,
            "files_deleted": self.files_deleted,
            "bytes_deleted": self.bytes_deleted,
            "volume": self.volume,
        }


def sample_headers(
    store: EncryptedStore, count: int = 16, seed: int | None = None
) -> list[SampledHeader]:
    """Up to `count` headers, chosen at random, each unwrapped by the live keyring first."""
    entries = list(store.entries())
    rng = random.Random(seed)
    chosen = rng.sample(entries, min(count, len(entries)))
    out = []
    for uuid, ct, path in chosen:
        with open(path, "rb") as handle:
            head = handle.read(HEADER_LEN)
        _unwrap(store.keyring, Header.parse(head, uuid, ct), uuid, ct)  # control
        out.append(SampledHeader(uuid, ct, head))
    return out


def key_locations(paths: HomePaths) -> list[Path]:
    """Every file holding key material the archive knows of: keyring and backups."""
    return [keyring_path(paths.keys_dir), *known_backup_locations(paths.keys_dir)]


def crypto_erase(paths: HomePaths, kek_ids: Iterable[str]) -> WipeReport:
    """Step 1: destroy the keyring and every known backup (overwrite, fsync, unlink)."""
    report = WipeReport(keys_destroyed=list(kek_ids))
    for location in key_locations(paths):
        if overwrite_and_unlink(location) or not location.exists():
            report.key_files_destroyed.append(str(location))
    return report


def delete_ciphertext(paths: HomePaths, report: WipeReport) -> WipeReport:
    """Step 2: every file under the data directory (its keys are already gone)."""
    files, size = delete_tree_files(paths.data_dir)
    report.files_deleted += files
    report.bytes_deleted += size
    return report


def destroy_volume(paths: HomePaths, report: WipeReport) -> WipeReport:
    """Step 3: the gocryptfs configuration (master key) and the backing directory."""
    conf = paths.volume_dir / GOCRYPTFS_CONF
    if conf.exists():
        overwrite_and_unlink(conf)
        files, size = delete_tree_files(paths.volume_dir)
        report.files_deleted += files
        report.bytes_deleted += size
        report.volume = f"gocryptfs volume {paths.volume_dir} (gocryptfs.conf overwritten, deleted)"
    return report


def unwrap_attempts(samples: Sequence[SampledHeader], keyrings: Sequence[KeySource]) -> int:
    """How many sampled headers any of these keyrings still unwraps (must be 0)."""
    opened = 0
    for s in samples:
        header = Header.parse(s.header, s.uuid, s.content_type)
        for ring in keyrings:
            try:
                _unwrap(ring, header, s.uuid, s.content_type)
            except Exception:  # noqa: BLE001, S112 - any failure: it did not unwrap
                continue
            opened += 1
            break
    return opened


def find_plaintext(root: Path, canaries: Sequence[bytes] = ()) -> list[str]:
    """Files under `root` holding DICOM magic (at offset 128 or anywhere) or a canary."""
    hits = []
    needles = [DICOM_MAGIC, *[c for c in canaries if c]]
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                hits.append(str(path))
    return hits

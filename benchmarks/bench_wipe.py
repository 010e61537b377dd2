"""Crypto-erase time vs archive size, and delete/overwrite time per GB (issue 10).

For archives of growing size (encrypted stores written with the real envelope format),
time step 1 of the wipe (destroying the keyring and its registered backup) and step 2
(deleting the ciphertext), and as reference an overwrite-then-delete of the same files.
Expected shape: crypto-erase stays flat (it touches two small files whatever the size);
delete and overwrite grow with the size. Prints per-size figures and the ratio of the
crypto-erase time at the largest size to that at the smallest. Not a test.

    .venv/bin/python benchmarks/bench_wipe.py [--sizes-mb 16,64,256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archive.paths import HomePaths  # noqa: E402
from archive.vault import EncryptedStore, Keyring, backup_keyring  # noqa: E402
from archive.vault.keyring import keyring_path  # noqa: E402
from archive.vault.sealing import KdfParams  # noqa: E402
from archive.vault.shred import delete_tree_files, overwrite_and_unlink  # noqa: E402
from archive.vault.wipe import crypto_erase  # noqa: E402

FAST = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)
PASS = "benchmark passphrase, not a secret at all"  # noqa: S105
FILE_MB = 4


def build(root: Path, size_mb: int) -> tuple[HomePaths, Keyring]:
    paths = HomePaths(root)
    ring = Keyring.create(keyring_path(paths.keys_dir), PASS, kdf=FAST)
    backup_keyring(ring, root / "offsite" / "backup.json", PASS + " recovery", kdf=FAST)
    store = EncryptedStore(paths.storage_dir, ring, fsync=False)
    blob = os.urandom(FILE_MB << 20)
    for i in range(max(1, size_mb // FILE_MB)):
        store.write(f"{i:08d}-0000-4000-8000-000000000000", 1, blob)
    os.sync()
    return paths, ring


def overwrite_tree(root: Path) -> None:
    for dirpath, _d, files in os.walk(root):
        for name in files:
            overwrite_and_unlink(Path(dirpath) / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="16,64,256")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes_mb.split(",")]
    erase_times = {}
    for size in sizes:
        work = Path(tempfile.mkdtemp(prefix="bench-wipe-"))
        try:
            paths, ring = build(work / "a", size)
            t0 = time.perf_counter()
            crypto_erase(paths, ring.kek_ids())
            erase = time.perf_counter() - t0
            t0 = time.perf_counter()
            files, nbytes = delete_tree_files(paths.storage_dir)
            delete = time.perf_counter() - t0
            paths_b, _ = build(work / "b", size)
            t0 = time.perf_counter()
            overwrite_tree(paths_b.storage_dir)
            overwrite = time.perf_counter() - t0
        finally:
            shutil.rmtree(work, ignore_errors=True)
        gb = nbytes / 2**30
        erase_times[size] = erase
        print(
            f"{size:>6} MB ({files} files): crypto-erase {erase * 1000:.2f} ms; "
            f"delete {delete / gb:.2f} s/GB; overwrite+delete {overwrite / gb:.2f} s/GB "
            f"(delete is {overwrite / max(delete, 1e-9):.1f}x faster than overwrite)"
        )
    lo, hi = sizes[0], sizes[-1]
    print(
        f"crypto-erase at {hi} MB vs {lo} MB: {erase_times[hi] / max(erase_times[lo], 1e-9):.2f}x "
        f"for {hi / lo:.0f}x the data (flat = does not grow with size)"
    )


if __name__ == "__main__":
    main()

"""Crypto cost of the vault's storage area, against a pass-through store, in one run.

Prints, for the same data:
  1. store write+read throughput, encrypted vs pass-through (same atomic-write code,
     same fsync policy), as a ratio (target >= 0.9 for the whole pipeline);
  2. decryption throughput of one large file (default 512 MiB), in memory
     (decrypt_bytes), from disk (decrypt_file), and streamed to a sink (decrypt_stream),
     each next to the plain reference doing the same allocation/reading (target >= 1 GB/s).

  3. the whole pipeline through real Orthanc + the plugin (de-identification on ingest,
     storage area), the same corpus sent to two archives started in this run: one with
     the encrypted storage area, one with the audited benchmark-only pass-through
     (ARCHIVE_BENCH_PASSTHROUGH_STORAGE=1, benchmarks/plugin_entry.py); ingest (REST
     upload) and read (each instance's DICOM file once, after a restart so Orthanc's
     cache is cold) throughput, as ratios (target >= 0.9). Both archives run with the
     benchmark entry's open filter (ARCHIVE_UNSAFE_DISABLE_HTTP_FILTER=1, audited) on
     loopback, in temporary homes.

Run: .venv/bin/python benchmarks/bench_crypto.py [--large-mib 512] [--files 200]
     [--instances 60] [--no-pipeline]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from archive.vault import EncryptedStore, KdfParams, Keyring  # noqa: E402
from archive.vault.envelope import decrypt_bytes, decrypt_file, decrypt_stream, encrypt_bytes  # noqa: E402
from archive.vault.fsutil import atomic_write  # noqa: E402


class PlainStore:
    """Reference: the same layout and atomic writes, no encryption."""

    def __init__(self, root: Path, *, fsync: bool):
        self.root, self.fsync = root, fsync

    def _path(self, uuid: str, ct: int) -> Path:
        return self.root / uuid[:2] / uuid[2:4] / f"{uuid}.{ct}"

    def write(self, uuid: str, ct: int, data: bytes) -> None:
        path = self._path(uuid, ct)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, sync=self.fsync)

    def read(self, uuid: str, ct: int) -> bytes:
        return self._path(uuid, ct).read_bytes()


class Sink(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        return len(data)


def best(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: first touch of fresh memory is slow on this platform
    return min(_timed(fn) for _ in range(repeat))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pipeline(instances: int) -> None:
    """Encrypted vs pass-through storage area in the real pipeline (see module doc)."""
    from tests.corpus import make_ct_series, to_bytes
    from tests.harness import bench_env, new_archive

    series = make_ct_series(
        instances, patient_id="PIDBENCH", rows=512, columns=512, vendor_header=True
    )
    corpus = [to_bytes(ds) for ds in series]
    mb = sum(len(d) for d in corpus) / 1e6
    names = ("encrypted", "pass-through")
    timings = {name: {"ingest": 0.0, "read": 0.0} for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        archives = {}
        for name, clear in zip(names, (False, True), strict=True):
            archive = new_archive(Path(tmp) / name)
            archive.env.update(bench_env(open_rest=True, clear_storage=clear))
            archives[name] = archive
        # Both archives run side by side and requests alternate between them (the order
        # flips every time), so machine noise hits both alike.
        try:
            clients = {}
            for name, archive in archives.items():
                archive.start()
                # One connection per request: Orthanc drops idle keep-alive connections.
                clients[name] = httpx.Client(
                    base_url=archive.url,
                    timeout=120,
                    limits=httpx.Limits(max_keepalive_connections=0),
                )
                clients[name].post("/instances", content=corpus[0]).raise_for_status()  # warm-up
            for i, payload in enumerate(corpus[1:]):
                for name in names if i % 2 == 0 else names[::-1]:
                    start = time.perf_counter()
                    clients[name].post("/instances", content=payload).raise_for_status()
                    timings[name]["ingest"] += time.perf_counter() - start
            for name, archive in archives.items():
                clients.pop(name).close()
                archive.stop()
                archive.start()  # cold: Orthanc's parsed-DICOM cache is empty
                clients[name] = httpx.Client(
                    base_url=archive.url,
                    timeout=120,
                    limits=httpx.Limits(max_keepalive_connections=0),
                )
            ids = {name: clients[name].get("/instances").json() for name in names}
            assert all(len(v) == len(corpus) for v in ids.values()), ids
            for i in range(len(corpus)):
                for name in names if i % 2 == 0 else names[::-1]:
                    start = time.perf_counter()
                    clients[name].get(f"/instances/{ids[name][i]}/file").raise_for_status()
                    timings[name]["read"] += time.perf_counter() - start
            for client in clients.values():
                client.close()
        finally:
            for archive in archives.values():
                archive.stop()
    enc, pln = timings["encrypted"], timings["pass-through"]
    n = len(corpus)
    print(f"pipeline (real Orthanc + plugin): {n} CT instances, {mb:.0f} MB, REST, one run")
    for what, count in (("ingest", n - 1), ("read", n)):
        share = mb * count / n
        print(
            f"  {what:6} encrypted {share / enc[what]:7.1f} MB/s   pass-through "
            f"{share / pln[what]:7.1f} MB/s   ratio {pln[what] / enc[what]:.2f} (target >= 0.90)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-mib", type=int, default=512)
    parser.add_argument("--files", type=int, default=200, help="files in the store test")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fsync", action="store_true", help="fsync every write (both stores)")
    parser.add_argument("--instances", type=int, default=60, help="instances in the pipeline")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the Orthanc pipeline")
    args = parser.parse_args()
    if not args.no_pipeline:
        pipeline(args.instances)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ring = Keyring.create(
            root / "keys" / "keyring.json", "benchmark passphrase", kdf=KdfParams(1, 1024, 1)
        )
        # Typical attachment sizes: CT/MR slices (~0.5 MiB), JSON summaries (few KiB),
        # and some larger multi-frame objects.
        sizes = [4_000, 520_000, 530_000, 2_100_000, 260_000] * (args.files // 5)
        corpus = [
            (f"{i:08x}-0000-0000-0000-{i:012x}", os.urandom(size)) for i, size in enumerate(sizes)
        ]
        total = sum(len(d) for _, d in corpus)

        def run(store: object) -> tuple[float, float]:
            write = best(lambda: [store.write(u, 1, d) for u, d in corpus], args.repeat)
            read = best(lambda: [store.read(u, 1) for u, _ in corpus], args.repeat)
            return write, read

        enc_w, enc_r = run(EncryptedStore(root / "enc", ring, fsync=args.fsync))
        pln_w, pln_r = run(PlainStore(root / "plain", fsync=args.fsync))
        mb = total / 1e6
        print(f"store corpus: {len(corpus)} files, {mb:.0f} MB, fsync={args.fsync}")
        print(
            f"  write  encrypted {mb / enc_w:8.0f} MB/s   pass-through {mb / pln_w:8.0f} MB/s"
            f"   ratio {pln_w / enc_w:.2f}"
        )
        print(
            f"  read   encrypted {mb / enc_r:8.0f} MB/s   pass-through {mb / pln_r:8.0f} MB/s"
            f"   ratio {pln_r / enc_r:.2f}"
        )
        both = (pln_w + pln_r) / (enc_w + enc_r)
        print(f"  write+read ratio encrypted/pass-through: {both:.2f} (target >= 0.90)")

        size = args.large_mib << 20
        plain = os.urandom(size)
        blob = encrypt_bytes(ring, "large-0000", 1, plain)
        big = root / "large.enc"
        big.write_bytes(blob)
        ref = root / "large.plain"
        ref.write_bytes(plain)
        gb = size / 1e9
        t_mem = best(lambda: decrypt_bytes(ring, "large-0000", 1, blob), args.repeat)
        t_copy = best(lambda: bytearray(plain), args.repeat)
        t_file = best(lambda: decrypt_file(ring, "large-0000", 1, big), args.repeat)
        t_read = best(ref.read_bytes, args.repeat)

        def stream() -> None:
            with open(big, "rb") as src:
                decrypt_stream(ring, "large-0000", 1, src, Sink())

        def plain_stream() -> None:
            with open(ref, "rb") as src:
                while src.read(1 << 20):
                    pass

        t_stream = best(stream, args.repeat)
        t_pstream = best(plain_stream, args.repeat)
        t_enc = best(lambda: encrypt_bytes(ring, "large-0000", 1, plain), args.repeat)
        print(f"large file: {args.large_mib} MiB")
        print(
            f"  decrypt in memory  {gb / t_mem:6.2f} GB/s   (plain copy      {gb / t_copy:6.2f}"
            f" GB/s, ratio {t_copy / t_mem:.2f})"
        )
        print(
            f"  decrypt from file  {gb / t_file:6.2f} GB/s   (plain read      {gb / t_read:6.2f}"
            f" GB/s, ratio {t_read / t_file:.2f})"
        )
        print(
            f"  decrypt streamed   {gb / t_stream:6.2f} GB/s   (plain streamed  "
            f"{gb / t_pstream:6.2f} GB/s, ratio {t_pstream / t_stream:.2f})"
        )
        print(f"  encrypt in memory  {gb / t_enc:6.2f} GB/s")
        worst = min(gb / t_mem, gb / t_file, gb / t_stream)
        print(f"  slowest decryption path: {worst:.2f} GB/s (target >= 1.00)")


if __name__ == "__main__":
    main()

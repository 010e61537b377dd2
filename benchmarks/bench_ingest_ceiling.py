"""The ceiling of ingest with orthanc-python 4.0: what any Python-storage archive can reach
against plain Orthanc 1.10.1, same corpus, same run, interleaved rounds.

    .venv/bin/python benchmarks/bench_ingest_ceiling.py [--count 200] [--rounds 3]
                                [--methods rest,cstore] [--only plain,py-dir,...] [--json]

Servers (each a fresh Orthanc in a temp dir per measurement, warmed up, as in
bench_ingest.py, whose corpus, senders and plain Orthanc this reuses):
  plain         Orthanc 1.10.1, no plugin (its FilesystemStorage, SyncStorageArea:
                one fdatasync of the file, no directory fsync)
  py-file       + a minimal orthanc-python plugin (benchmarks/ceiling_plugin.py) that
                only registers a storage area: write + fdatasync, like Orthanc's own
  py-dir        the same storage area with write + fsync + directory fsync (the
                archive's durability for the DICOM file)
  py-nosync     the same storage area without any fsync (the absolute floor)
  py-dir-keep   py-dir + an empty received-instance callback answering KeepAsIs
  py-dir-modify py-dir + a callback answering Modify with the bytes it was given
                (the archive's callback shape: Orthanc parses the instance again)
  archive       the archive as bench_ingest.py runs it (HTTP filter, de-identification,
                encrypted storage area, ledger, audit; C-STORE through its DICOM front)
With a Python storage area Orthanc 1.10 writes two attachments per instance (the DICOM
file and "DICOM until pixel data"): orthanc-python 4.0 registers no range read. Plain
Orthanc writes one. Each round runs every server once per method, in an order that
turns from round to round. Each server's rate is printed with its ratio to plain, per
method: best to best, and the median of each round's own ratio (the steadier figure on
a shared machine). Printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archive.serve.orthanc_config import PYTHON_PLUGIN  # noqa: E402
from benchmarks._common import emit_json, make_ct_corpus, progress, ratio  # noqa: E402
from benchmarks.bench_ingest import (  # noqa: E402
    ORTHANC,
    TARGET,
    WARMUP,
    ArchiveUnderTest,
    PlainOrthanc,
    attachments_per_instance,
    cstore_send,
    rest_send,
)

PLUGIN = Path(__file__).resolve().parent / "ceiling_plugin.py"
# name -> (CEILING_SYNC, CEILING_CALLBACK); "plain" and "archive" are not plugin servers
VARIANTS = {
    "py-file": ("file", ""),
    "py-dir": ("dir", ""),
    "py-nosync": ("none", ""),
    "py-dir-keep": ("dir", "keep"),
    "py-dir-modify": ("dir", "modify"),
}
SERVERS = ["plain", *VARIANTS, "archive"]
LABELS = {"rest": "REST", "cstore": "C-STORE"}


class PythonStorageOrthanc(PlainOrthanc):
    """Plain Orthanc's config + the Python plugin with benchmarks/ceiling_plugin.py."""

    def __init__(self, root: Path, name: str) -> None:
        super().__init__(root)
        self.name = name
        sync, callback = VARIANTS[name]
        self.extra_config = {"Plugins": [str(PYTHON_PLUGIN)], "PythonScript": str(PLUGIN)}
        self.extra_env = {
            "CEILING_STORAGE": str(self.storage_dir),
            "CEILING_SYNC": sync,
            "CEILING_CALLBACK": callback,
        }


def new_server(name: str, root: Path):
    if name == "plain":
        return PlainOrthanc(root)
    if name == "archive":
        return ArchiveUnderTest(root)
    return PythonStorageOrthanc(root, name)


_RUNNING: list = []


def measure(name: str, method: str, root: Path, corpus: dict) -> tuple[float, dict]:
    server = new_server(name, root)
    _RUNNING.append(server)
    try:
        server.start()
        if method == "cstore":
            cstore_send(server, corpus["warm_files"])
        else:
            rest_send(server, corpus["warm_payloads"])
        before = server.instances()
        start = time.perf_counter()
        if method == "cstore":
            cstore_send(server, corpus["files"])
        else:
            rest_send(server, corpus["payloads"])
        elapsed = time.perf_counter() - start
        stored = server.instances() - before
        n = len(corpus["files"])
        if stored != n:
            progress(f"WARNING {name}/{method}: {stored} of {n} instances stored")
        files = attachments_per_instance(server.storage_dir, before + stored)
        return n / elapsed, {"stored": stored, "files_per_instance": files}
    finally:
        server.stop()
        _RUNNING.remove(server)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="CT slices in the corpus")
    parser.add_argument("--size", type=int, default=512, help="rows = columns")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--methods", default="rest,cstore", help="comma list: rest,cstore")
    parser.add_argument(
        "--only", default="", help=f"comma list of servers (plain is always run): {SERVERS}"
    )
    parser.add_argument("--json", action="store_true", help="also print one BENCH_JSON line")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if set(methods) - set(LABELS):
        parser.error(f"unknown method(s): {methods}; use rest,cstore")
    servers = SERVERS
    if args.only:
        chosen = {s.strip() for s in args.only.split(",") if s.strip()}
        if chosen - set(SERVERS):
            parser.error(f"unknown server(s): {sorted(chosen - set(SERVERS))}; see --help")
        servers = [s for s in SERVERS if s == "plain" or s in chosen]
    for needed in (Path(ORTHANC), PYTHON_PLUGIN):
        if not os.access(needed, os.R_OK):
            print(f"{needed} not found: run `make setup`", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    rates: dict[str, list[float]] = {}
    details: dict[str, dict] = {}
    loads: list[float] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-ceiling-"))
    try:
        progress(f"generating {args.count} CT slices {args.size}x{args.size}")
        files = make_ct_corpus(tmp / "corpus", args.count, size=args.size)
        warm = make_ct_corpus(
            tmp / "warm", WARMUP, size=args.size, studies=1, series_per_study=1,
            patient_prefix="WARM",
        )  # fmt: skip
        corpus = {
            "files": files,
            "payloads": [p.read_bytes() for p in files],
            "warm_files": warm,
            "warm_payloads": [p.read_bytes() for p in warm],
        }
        for r in range(args.rounds):  # every server once per round: same noise for all
            loads.append(os.getloadavg()[0])
            progress(f"round {r + 1}/{args.rounds} (load {loads[-1]:.2f})")
            # the order turns each round: no server always follows the same one
            turn = r % len(servers)
            ordered = servers[turn:] + servers[:turn]
            for method in methods:
                for name in ordered:
                    key = f"{name} {method}"
                    rate, info = measure(name, method, tmp / key.replace(" ", "_"), corpus)
                    rates.setdefault(key, []).append(rate)
                    details[key] = info
                    progress(f"{key}: {rate:.1f} instances/s")
        loads.append(os.getloadavg()[0])
    except KeyboardInterrupt:
        print("interrupted: servers stopped, temp dir removed", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench_ingest_ceiling failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in list(_RUNNING):
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"corpus: {len(files)} CT slices {args.size}x{args.size}, {args.rounds} interleaved "
        f"round(s), fresh servers; load average at each round start and at the end: "
        + ", ".join(f"{x:.2f}" for x in loads)
    )
    ratios: dict[str, float | None] = {}
    for method in methods:
        plain = max(rates[f"plain {method}"])
        print(
            f"{LABELS[method]}: best (median) instances/s; ratio to plain: best to best "
            "(median of the rounds' own ratios)"
        )
        for name in servers:
            key = f"{name} {method}"
            best, median = max(rates[key]), statistics.median(rates[key])
            per_round = [
                r / p for r, p in zip(rates[key], rates[f"plain {method}"], strict=True) if p
            ]
            round_median = statistics.median(per_round) if per_round else None
            ratios[f"{name}/plain {method}"] = ratio(best, plain)
            ratios[f"{name}/plain {method} median of rounds"] = round_median
            files_per = details[key]["files_per_instance"]
            print(
                f"  {name:<14} {best:7.1f} ({median:6.1f}) /s  "
                f"{ratio(best, plain):5.2f}x ({round_median or 0:4.2f}x)  "
                f"files per instance {files_per}"
            )
    print(f"(target of issue 26 for the archive: >= {TARGET}x plain)")
    if args.json:
        emit_json(
            "ingest_ceiling",
            {f"{k} instances/s": [round(v, 1) for v in vs] for k, vs in rates.items()},
            {k: (round(v, 3) if v is not None else None) for k, v in ratios.items()},
            details=details,
            loads=loads,
            count=len(files),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

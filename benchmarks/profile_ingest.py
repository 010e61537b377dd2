"""Per-instance ingest budget (issue 26): where one REST upload's time goes in the archive.

    .venv/bin/python benchmarks/profile_ingest.py [--count 120] [--rate 200]

Starts an archive (tests.harness, as bench_ingest does), uploads `--count` CT slices
512x512 over one keep-alive connection while py-spy (`pip install py-spy`, in the dev
extras) samples the archive's Orthanc process with --idle --threads, and prints the
milliseconds per instance of each part, from the samples of the Orthanc threads that
run Python callbacks:

- received-instance callback: de-identification, pixel step, audit (and the rest of it);
- storage area `create`: encryption, the file fsync + directory fsync, ledger, the rest;
- HTTP filter;
- Orthanc's own share: the wall time per instance not spent in the plugin's Python.

The catalogue sync runs in its own thread (after a study is stable); its samples are
printed apart. Not part of `make bench`. Root (or ptrace rights) is needed by py-spy.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from benchmarks._common import make_ct_corpus  # noqa: E402
from tests.harness import add_user, new_archive  # noqa: E402

# (part, predicate on the frames of one sample, innermost last); first match wins
_CALLBACK = "on_received"
_CREATE = "StorageArea.create"
_FILTER = "filter"
PARTS = (
    ("callback: de-identification", lambda f: _has(f, _CALLBACK) and _has(f, "deidentify")),
    ("callback: pixel step", lambda f: _has(f, _CALLBACK) and _has(f, "check_pixels")),
    ("callback: audit", lambda f: _has(f, _CALLBACK) and _has(f, "Services.record", "AuditLog")),
    (
        "callback: archive DB (records, one commit)",
        lambda f: (
            _has(f, _CALLBACK)
            and _has(f, "record_pixel_report", "record_flags", "origins", "transaction")
        ),
    ),
    ("callback: face slices (record, series)", lambda f: _has(f, _CALLBACK) and _has(f, "face")),
    ("callback: other", lambda f: _has(f, _CALLBACK)),
    ("storage create: encryption", lambda f: _has(f, _CREATE) and _has(f, "encrypt_bytes")),
    ("storage create: directory fsyncs", lambda f: _has(f, _CREATE) and _has(f, "fsync_dir")),
    (
        "storage create: file write+fsync+rename",
        lambda f: _has(f, _CREATE) and _has(f, "atomic_write"),
    ),
    ("storage create: ledger row read", lambda f: _has(f, _CREATE) and _has(f, "entry_from")),
    (
        "storage create: ledger insert (DB)",
        lambda f: _has(f, _CREATE) and _has(f, "InstanceLedger.record"),
    ),
    ("storage create: other", lambda f: _has(f, _CREATE)),
    ("HTTP filter", lambda f: _has(f, "http_filter", "on_filter", "_filter")),
)


def _has(frames: list[str], *names: str) -> bool:
    return any(name in frame for frame in frames for name in names)


def _orthanc_pid(serve_pid: int) -> int:
    for _ in range(100):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid == serve_pid and comm.lower().startswith("orthanc"):
                return int(entry.name)
        time.sleep(0.1)
    raise SystemExit("no Orthanc process under archive serve")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=120)
    ap.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    ap.add_argument("--keep", action="store_true", help="keep the raw py-spy output")
    ap.add_argument(
        "--native",
        action="store_true",
        help="py-spy --native: C frames too (e.g. SQLite's fdatasync against its busy-wait "
        "sleep inside the ledger insert); with --keep, for reading the raw stacks",
    )
    args = ap.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    tmp = Path(tempfile.mkdtemp(prefix="profile-ingest-"))
    archive = None
    try:
        files = make_ct_corpus(tmp / "corpus", args.count + 6)
        payloads = [p.read_bytes() for p in files]
        archive = new_archive(tmp / "home")
        password = add_user(archive, "profile-intake", ["personnel"])
        archive.start()
        pid = _orthanc_pid(archive.process.pid)
        with httpx.Client(
            base_url=archive.url, auth=("profile-intake", password), timeout=120
        ) as http:
            for payload in payloads[:6]:  # warm up
                http.post("/instances", content=payload).raise_for_status()
            raw = tmp / "pyspy.txt"
            spy = subprocess.Popen(
                [pyspy, "record", "--pid", str(pid), "--idle", "--threads", "-r", str(args.rate),
                 "-f", "raw", "-o", str(raw), *(["--native"] if args.native else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1.5)  # py-spy attaches
            start = time.perf_counter()
            for payload in payloads[6:]:
                http.post("/instances", content=payload).raise_for_status()
            wall = time.perf_counter() - start
            time.sleep(0.3)
            spy.send_signal(2)
            spy.wait(timeout=60)
        report(raw, wall, args.count, args.rate)
        if args.keep:
            shutil.copy(raw, "profile_ingest.pyspy.txt")
    finally:
        if archive is not None:
            archive.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def report(raw: Path, wall: float, count: int, rate: int) -> None:
    per_thread: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    busy: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0]
        busy[thread] += int(n)
        part = next((name for name, match in PARTS if match(frames)), None)
        if part is None:
            if _has(frames, "on_change", "sync_study", "catalogue"):
                part = "catalogue sync (its own thread)"
            else:
                continue
        per_thread[thread][part] += int(n)
    # one sample in ms per instance; py-spy falls behind on a loaded machine, so the
    # samples are scaled to the wall time they cover (the busiest thread = the wall time)
    covered = max(busy.values(), default=0) or 1
    ms = wall * 1000.0 / covered / count
    per_instance = wall / count * 1000
    parts: collections.Counter = collections.Counter()
    for counter in per_thread.values():
        parts.update(counter)
    in_request = sum(v for k, v in parts.items() if "own thread" not in k) * ms
    print(f"{count} REST uploads of a 512x512 CT slice, one client: {per_instance:.1f} ms each")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print(f"{'part':40s} {'ms/instance':>12s}")
    for name, _ in PARTS:
        print(f"{name:40s} {parts[name] * ms:12.2f}")
    print(f"{'plugin Python in the request, total':40s} {in_request:12.2f}")
    print(f"{'Orthanc own share (wall - plugin)':40s} {per_instance - in_request:12.2f}")
    name = "catalogue sync (its own thread)"
    print(f"{name:40s} {parts[name] * ms:12.2f}")


if __name__ == "__main__":
    main()

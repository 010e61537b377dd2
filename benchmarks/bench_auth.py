"""Cost of the HTTP access filter: authenticated requests with the filter vs without it.

Starts two real archives (Orthanc + plugin) on fresh homes, in the same run:
  - "filter":    the archive as shipped: every request authenticated (HTTP Basic,
                 verified-credential cache), decided against the route policy, audited
                 (group commit);
  - "reference": the same archive on the benchmark entry (benchmarks/plugin_entry.py)
                 with an open filter, ARCHIVE_UNSAFE_DISABLE_HTTP_FILTER=1 (logged as an
                 error and audited as security.filter_disabled; the production plugin has
                 no such switch).
Both are sent the same authenticated requests (GET /teaching/health and GET /system as a
personnel user) from `--clients` threads with keep-alive connections, and the throughput
of each is printed with the ratio filter/reference (target >= 0.9).

Run: .venv/bin/python benchmarks/bench_auth.py [--seconds 5] [--clients 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import (  # noqa: E402
    OPEN_REST,
    RunningArchive,
    add_user,
    client,
    new_archive,
)

ROUTES = ("/teaching/health", "/system")


def throughput(archive: RunningArchive, route: str, seconds: float, clients: int) -> float:
    """Requests per second over `seconds`, `clients` threads, one keep-alive client each."""
    counts = [0] * clients
    errors: list[str] = []
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        with client(archive, "bench") as http:
            http.get(route)  # warm: connection and credential cache
            while time.monotonic() < stop:
                answer = http.get(route)
                if answer.status_code != 200:
                    errors.append(f"{route}: HTTP {answer.status_code}")
                    return
                counts[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"benchmark request failed: {errors[0]}")
    return sum(counts) / (time.monotonic() - start)


def start(root: Path, disabled: bool) -> RunningArchive:
    archive = new_archive(root)
    add_user(archive, "bench", ["personnel"])
    if disabled:
        archive.env.update(OPEN_REST)
    return archive.start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per route and archive")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--rounds", type=int, default=6, help="alternations (fair to noise)")
    args = parser.parse_args()
    slice_seconds = args.seconds / args.rounds
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        archives = {
            "reference": start(Path(tmp) / "reference", disabled=True),
            "filter": start(Path(tmp) / "filter", disabled=False),
        }
        try:
            log = archives["reference"].config.home.audit_dir / "audit.jsonl"
            assert b"security.filter_disabled" in log.read_bytes(), "disabling was not audited"
            # Both run at once; short alternating slices spread machine noise over both.
            results = {label: dict.fromkeys(ROUTES, 0.0) for label in archives}
            for _ in range(args.rounds):
                for route in ROUTES:
                    for label, archive in archives.items():
                        rate = throughput(archive, route, slice_seconds, args.clients)
                        results[label][route] += rate / args.rounds
        finally:
            for archive in archives.values():
                archive.stop()
    print(f"authenticated HTTP throughput, {args.clients} clients, {args.seconds:g} s per route")
    ratios = []
    for route in ROUTES:
        with_filter, reference = results["filter"][route], results["reference"][route]
        ratio = with_filter / reference
        ratios.append(ratio)
        print(
            f"  GET {route:<18} filter {with_filter:8.0f} req/s   "
            f"no filter {reference:8.0f} req/s   ratio {ratio:.2f}x"
        )
    print(f"worst ratio {min(ratios):.2f}x (target >= 0.9x)")


if __name__ == "__main__":
    main()

"""The viewer's DICOMweb through the HTTP filter vs the same routes without it.

Starts two real archives (Orthanc + plugin) on fresh homes in the same run, each holding
the same `--slices`-slice CT series (sent by C-STORE, de-identified, stored encrypted):
  - "filter":    as shipped: every request through the HTTP filter (the web session
                 cookie checked, the route decided, the request audited), then the web
                 session, archive.core's viewer.open and the suite-network check;
  - "reference": the same archive on the benchmark entry with an open filter
                 (tests.harness.OPEN_REST, benchmarks/open_rest.py: nothing decided or
                 audited per request): the same routes, the web session and
                 viewer.open, the suite check on the address the open filter notes.
For each, as the viewer does it with a fresh web session per round:
  - time to first image: QIDO-RS study and series, the series' WADO-RS metadata, then
    the first slice's frame (each request waits for the one before, as OHIF's do);
  - frames per second: every slice's frame, `--clients` requests at a time.
Rounds alternate between the archives; medians are printed with the ratios
filter/reference (time: reference/filter, so higher is better; target >= 0.8).

Run: .venv/bin/python benchmarks/bench_viewer.py [--slices 200] [--size 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import emit_json, progress, ratio, ratio_line  # noqa: E402

DICOMWEB = "/teaching/ui/dicomweb"
VERBOSE = "--verbose" in sys.argv


def start(root: Path, disabled: bool, files: list[Path]):
    from tests.dicom_tools import storescu
    from tests.harness import OPEN_REST, add_user, new_archive, register_node
    from tests.integration.test_pulls import wait_for_cases

    archive = new_archive(root)
    register_node(archive, "bench-scu", "BENCH_SCU", store=True)
    add_user(archive, "reader", ["registrar"])
    if disabled:
        archive.env.update(OPEN_REST)
    archive.start()
    for _ in range(30):
        if storescu(archive.dicom_port, archive.aet, "BENCH_SCU", files).returncode == 0:
            break
        time.sleep(1)
    wait_for_cases(archive, 1, timeout=300)
    return archive


def session(archive):
    import httpx

    http = httpx.Client(base_url=archive.url, timeout=120)
    page = http.get("/teaching/ui/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    form = {"csrf": csrf, "user": "reader", "password": archive.passwords["reader"]}
    if http.post("/teaching/ui/login", data=form).status_code != 303:
        raise SystemExit("benchmark: the web sign-in failed")
    return http


def study_uid(archive) -> str:
    from archive import db

    conn = db.connect(archive.config.home.db_path)
    try:
        return conn.execute("SELECT study_uid FROM catalogue_cases").fetchone()[0]
    finally:
        conn.close()


def get(http, path: str):
    answer = http.get(path)
    if answer.status_code != 200:
        raise SystemExit(f"benchmark: GET {path}: HTTP {answer.status_code} {answer.text[:200]}")
    return answer


def one_round(archive, uid: str, clients: int) -> tuple[float, float, int]:
    """(seconds to the first image, frames per second, frames) with a fresh session."""
    http = session(archive)
    try:
        base = f"{DICOMWEB}/studies/{uid}"
        start = time.perf_counter()
        steps = [start]
        get(http, f"{DICOMWEB}/studies?StudyInstanceUID={uid}")
        steps.append(time.perf_counter())
        series = get(http, f"{base}/series").json()[0]["0020000E"]["Value"][0]
        steps.append(time.perf_counter())
        metadata = get(http, f"{base}/series/{series}/metadata").json()
        steps.append(time.perf_counter())
        sops = [m["00080018"]["Value"][0] for m in metadata]
        frame = f"{base}/series/{series}/instances/{{}}/frames/1"
        get(http, frame.format(sops[0]))
        steps.append(time.perf_counter())
        first = time.perf_counter() - start
        if VERBOSE:
            parts = ", ".join(
                f"{(b - a) * 1000:.0f}" for a, b in zip(steps, steps[1:], strict=False)
            )
            progress(f"{archive.home.name}: study, series, metadata, frame: {parts} ms")
        cookies = dict(http.cookies)
    finally:
        http.close()
    queue = list(sops)
    lock = threading.Lock()

    def worker() -> None:
        import httpx

        with httpx.Client(base_url=archive.url, timeout=120, cookies=cookies) as own:
            while True:
                with lock:
                    if not queue:
                        return
                    sop = queue.pop()
                get(own, frame.format(sop))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return first, len(sops) / (time.perf_counter() - start), len(sops)


def main() -> None:
    from tests.corpus import make_ct_series, to_bytes
    from tests.dicom_tools import write_files

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512, help="rows = columns of each slice")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="frame requests at a time")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="time each step")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-viewer-") as tmp:
        progress(f"writing a {args.slices}-slice {args.size}x{args.size} CT series")
        series = make_ct_series(args.slices, rows=args.size, columns=args.size)
        files = write_files(Path(tmp) / "in", [to_bytes(d) for d in series])
        archives = {}
        try:
            for label, disabled in (("reference", True), ("filter", False)):
                progress(f"starting the {label} archive and sending the series")
                archives[label] = start(Path(tmp) / label, disabled, files)
            uids = {label: study_uid(a) for label, a in archives.items()}
            results: dict[str, list[tuple[float, float, int]]] = {k: [] for k in archives}
            for number in range(args.rounds):
                progress(f"round {number + 1} of {args.rounds}")
                for label, archive in archives.items():
                    results[label].append(one_round(archive, uids[label], args.clients))
        finally:
            for archive in archives.values():
                archive.stop()
    first = {k: statistics.median(r[0] for r in v) for k, v in results.items()}
    fps = {k: statistics.median(r[1] for r in v) for k, v in results.items()}
    best_first = {k: min(r[0] for r in v) for k, v in results.items()}
    best_fps = {k: max(r[1] for r in v) for k, v in results.items()}
    frames = results["filter"][0][2]
    print(f"viewer DICOMweb, a {frames}-slice {args.size}x{args.size} CT, {args.rounds} rounds, "
          f"{args.clients} frame requests at a time (median; best)")  # fmt: skip
    print(f"  time to first image   filter {first['filter'] * 1000:7.1f}; "
          f"{best_first['filter'] * 1000:7.1f} ms   no filter {first['reference'] * 1000:7.1f}; "
          f"{best_first['reference'] * 1000:7.1f} ms")  # fmt: skip
    print(f"  frames per second     filter {fps['filter']:7.1f}; {best_fps['filter']:7.1f}      "
          f"no filter {fps['reference']:7.1f}; {best_fps['reference']:7.1f}")  # fmt: skip
    ttfi = ratio(first["reference"], first["filter"])
    rate = ratio(fps["filter"], fps["reference"])
    print(ratio_line("time to first image (ref/filter)", ttfi, 0.8))
    print(ratio_line("frames per second (filter/ref)", rate, 0.8))
    print(ratio_line("  best of rounds: first image", ratio(best_first["reference"],
                                                           best_first["filter"]), 0.8))  # fmt: skip
    print(ratio_line("  best of rounds: frames/s", ratio(best_fps["filter"],
                                                        best_fps["reference"]), 0.8))  # fmt: skip
    if args.json:
        emit_json(
            "viewer",
            {"ttfi_ms_filter": first["filter"] * 1000, "ttfi_ms_reference": first["reference"]
             * 1000, "fps_filter": fps["filter"], "fps_reference": fps["reference"]},
            {"time_to_first_image": ttfi, "frames_per_second": rate},
            slices=frames, size=args.size,
        )  # fmt: skip


if __name__ == "__main__":
    main()

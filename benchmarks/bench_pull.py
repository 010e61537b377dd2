"""Pull throughput to a suite workstation: the archive against plain Orthanc, one run.

The same de-identified study (what the archive stored, decrypted from its storage area)
is sent to the same dcmtk storescp by
  - the archive: POST /teaching/pulls as a trained user (route checks, catalogue lookup,
    C-STORE from the plugin's REST callback, decrypting storage area, inventory, audit);
  - plain Orthanc 1.10.1 with no plugin: POST /modalities/{ws}/store (Synchronous).
Rounds alternate between the two; the best round of each is kept. Issue 8's target:
archive/plain >= 0.8. Printed, never asserted.

Run: .venv/bin/python benchmarks/bench_pull.py [--instances 200] [--size 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from benchmarks._common import emit_json, progress, rate_line, ratio, ratio_line  # noqa: E402
from benchmarks.bench_ingest import PlainOrthanc  # noqa: E402
from tests.corpus import make_ct_series, to_bytes  # noqa: E402
from tests.dicom_tools import storescu, write_files  # noqa: E402
from tests.harness import (  # noqa: E402
    add_user,
    base_env,
    client,
    free_port,
    new_archive,
    register_node,  # noqa: E402
)
from tests.integration.test_pulls import wait_for_cases  # noqa: E402

TARGET = 0.8
WS_AET = "BENCHWS"


def _received(directory: Path) -> int:
    return sum(1 for p in directory.iterdir() if p.is_file())


def _clear(directory: Path) -> None:
    for p in directory.iterdir():
        p.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-pull-"))
    inbox = root / "ws"
    inbox.mkdir()
    scp_port = free_port()
    scp = subprocess.Popen(
        ["storescp", "-aet", WS_AET, "--output-directory", str(inbox), str(scp_port)],
        env=base_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    archive = new_archive(root / "home")
    plain = PlainOrthanc(root / "plain")
    try:
        register_node(archive, "bench-scu", "BENCHSCU", store=True)
        added = archive.cli(
            "workstations", "add", "ws-bench", "--aet", WS_AET, "--host", "127.0.0.1",
            "--port", str(scp_port), "--location", "benchmark",
        )  # fmt: skip
        if added.returncode:
            raise SystemExit(added.stderr)
        add_user(archive, "bench-trainer", ["trainer"])
        archive.start()
        progress(f"sending {args.instances} CT slices {args.size}x{args.size} to the archive")
        series = make_ct_series(args.instances, rows=args.size, columns=args.size)
        files = write_files(root / "in", [to_bytes(ds) for ds in series])
        for _ in range(30):
            if storescu(archive.dicom_port, archive.aet, "BENCHSCU", files).returncode == 0:
                break
            time.sleep(1)
        case_id = wait_for_cases(archive, 1, timeout=300)[0]
        stored = archive.stored_dicom()

        progress("loading the same de-identified instances into plain Orthanc")
        plain.start()
        with httpx.Client(base_url=plain.url, timeout=300) as http:
            for payload in stored:
                http.post("/instances", content=payload).raise_for_status()
            http.put(
                "/modalities/ws-bench",
                json={"AET": WS_AET, "Host": "127.0.0.1", "Port": scp_port},
            ).raise_for_status()
            study = http.get("/studies").json()[0]

            def plain_round() -> float:
                _clear(inbox)
                start = time.perf_counter()
                http.post(
                    "/modalities/ws-bench/store",
                    json={"Resources": [study], "Synchronous": True},
                ).raise_for_status()
                elapsed = time.perf_counter() - start
                assert _received(inbox) == len(stored), "plain Orthanc sent an incomplete study"
                return len(stored) / elapsed

            with client(archive, "bench-trainer") as api:

                def archive_round() -> float:
                    _clear(inbox)
                    start = time.perf_counter()
                    answer = api.post(
                        "/teaching/pulls", json={"cases": [case_id], "workstation": "ws-bench"}
                    )
                    elapsed = time.perf_counter() - start
                    answer.raise_for_status()
                    assert _received(inbox) == len(stored), "the pull sent an incomplete study"
                    return len(stored) / elapsed

                archive_round(), plain_round()  # warm-up: caches, associations, JIT paths
                archive_rates, plain_rates = [], []
                for n in range(args.rounds):
                    progress(f"round {n + 1}/{args.rounds}")
                    archive_rates.append(archive_round())
                    plain_rates.append(plain_round())
    finally:
        archive.stop()
        plain.stop()
        scp.terminate()
        scp.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)

    best_archive, best_plain = max(archive_rates), max(plain_rates)
    value = ratio(best_archive, best_plain)
    print(f"Pull of one {len(stored)}-instance study ({args.size}x{args.size}) to storescp")
    print(rate_line("archive POST /teaching/pulls", best_archive))
    print(rate_line("plain Orthanc /modalities/store", best_plain))
    print(ratio_line("archive / plain", value, TARGET))
    if args.json:
        emit_json(
            "bench_pull",
            {"archive_instances_per_s": best_archive, "plain_instances_per_s": best_plain},
            {"archive_over_plain": value},
            instances=len(stored),
            target=TARGET,
        )


if __name__ == "__main__":
    main()

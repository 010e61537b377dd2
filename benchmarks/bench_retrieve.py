"""Retrieve of one study by a workstation: the archive's DICOM front against plain Orthanc.

A 200-slice 512x512 CT study (pydicom) is stored in the archive (by C-STORE, so it is
de-identified and encrypted) and the same de-identified instances in a plain Orthanc
1.10.1 with its own DICOM server and the workstation in its DicomModalities. The
workstation (AE BENCHWS: dcmtk storescp on its port, as OsiriX listens) then retrieves
the study, alternating between the two, TCP_NODELAY set everywhere:
  - C-MOVE to itself (dcmtk movescu -aem BENCHWS): the archive's front (authorised as a
    pull, case ID and title patched into each header, read and decrypted from the vault,
    audited, inventoried) against plain Orthanc's own C-MOVE SCP;
  - C-GET (dcmtk getscu, files written by getscu): the front against plain Orthanc's
    C-GET SCP.
The best round of each is kept. Issue 23's target: front / plain C-MOVE >= 0.9x, for
C-MOVE and for C-GET. Printed, never asserted.

Run: .venv/bin/python benchmarks/bench_retrieve.py [--instances 200] [--size 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from benchmarks._common import emit_json, progress, rate_line, ratio, ratio_line  # noqa: E402
from benchmarks.bench_ingest import ORTHANC, PlainOrthanc  # noqa: E402
from tests.corpus import make_ct_series, to_bytes  # noqa: E402
from tests.dicom_tools import storescu, write_files  # noqa: E402
from tests.harness import base_env, free_port, new_archive, register_node  # noqa: E402
from tests.integration.test_pulls import wait_for_cases  # noqa: E402

TARGET = 0.9
WS_AET = "BENCHWS"


class PlainScp(PlainOrthanc):
    """Plain Orthanc (no plugin) whose DICOM server knows the workstation."""

    def __init__(self, root: Path, ws_port: int) -> None:
        super().__init__(root)
        self.ws_port = ws_port

    def start(self, timeout: float = 60) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "PlainRetrieve",
            "StorageDirectory": str(self.storage_dir),
            "IndexDirectory": str(self.root / "index"),
            "TemporaryDirectory": str(self.root / "tmp"),
            "StorageCompression": False,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomModalities": {"ws": [WS_AET, "127.0.0.1", self.ws_port]},
            "SaveJobs": False,
            "Plugins": [],
        }
        path = self.root / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        log = open(self.root / "orthanc.log", "wb")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [ORTHANC, str(path)], stdout=log, stderr=subprocess.STDOUT, env=base_env(),
            start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/system", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError("plain Orthanc did not become ready")


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (Linux /proc); 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _front_pid(home: Path) -> int | None:
    """The DICOM front's process (a child of `archive serve`) of this archive home."""
    found = subprocess.run(
        ["pgrep", "-f", f"archive.dicom.front --home {home}"], capture_output=True,
        text=True, check=False,
    ).stdout.split()  # fmt: skip
    return int(found[0]) if found else None


def _count(directory: Path) -> int:
    return sum(1 for p in directory.iterdir() if p.is_file())


def _clear(directory: Path) -> None:
    for p in directory.iterdir():
        p.unlink()


def _retrieve(kind: str, port: int, called: str, uid: str, out: Path) -> float:
    """Seconds for one C-MOVE (to BENCHWS) or C-GET (into `out`) of the study."""
    tool = ["movescu", "-aem", WS_AET] if kind == "move" else ["getscu", "-od", str(out)]
    start = time.perf_counter()
    done = subprocess.run(
        [*tool, "-aet", WS_AET, "-aec", called, "-S", "-k", "QueryRetrieveLevel=STUDY",
         "-k", f"StudyInstanceUID={uid}", "127.0.0.1", str(port)],
        capture_output=True, text=True, env=base_env(), timeout=600, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{kind} to {called} failed: {done.stderr[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-retrieve-"))
    inbox, got = root / "ws", root / "got"
    inbox.mkdir()
    got.mkdir()
    scp_port = free_port()
    scp = subprocess.Popen(
        ["storescp", "-aet", WS_AET, "--output-directory", str(inbox), str(scp_port)],
        env=base_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    archive = new_archive(root / "home")
    plain = PlainScp(root / "plain", scp_port)
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}  # CPU ms per instance of the serving process
    try:
        register_node(archive, "bench-scu", "BENCHSCU", store=True)
        added = archive.cli(
            "workstations", "add", "ws-bench", "--aet", WS_AET, "--host", "127.0.0.1",
            "--port", str(scp_port), "--location", "benchmark",
        )  # fmt: skip
        if added.returncode:
            raise SystemExit(added.stderr)
        archive.start()
        progress(f"sending {args.instances} CT slices {args.size}x{args.size} to the archive")
        series = make_ct_series(args.instances, rows=args.size, columns=args.size)
        files = write_files(root / "in", [to_bytes(ds) for ds in series])
        if storescu(archive.dicom_port, archive.aet, "BENCHSCU", files).returncode:
            raise SystemExit("the archive did not take the study")
        wait_for_cases(archive, 1, timeout=300)
        stored = archive.stored_dicom()
        progress("loading the same de-identified instances into plain Orthanc")
        plain.start()
        with httpx.Client(base_url=plain.url, timeout=300) as http:
            for payload in stored:
                http.post("/instances", content=payload).raise_for_status()
            study = http.get("/studies").json()[0]
            uid = http.get(f"/studies/{study}").json()["MainDicomTags"]["StudyInstanceUID"]
        n = len(stored)
        front_pid = _front_pid(root / "home")
        plain_pid = plain.process.pid if plain.process is not None else None

        def one(name: str, kind: str, port: int, called: str) -> None:
            _clear(inbox)
            _clear(got)
            pid = plain_pid if name.startswith("plain") else front_pid
            before = _cpu_seconds(pid)
            seconds = _retrieve(kind, port, called, uid, got)
            cpu.setdefault(name, []).append(1000 * (_cpu_seconds(pid) - before) / n)
            time.sleep(0.2)  # storescp writes the last file after its answer
            arrived = _count(inbox if kind == "move" else got)
            if arrived != n:
                raise SystemExit(f"{name}: {arrived} of {n} instances arrived")
            rates.setdefault(name, []).append(n / seconds)

        plan = [
            ("front C-MOVE", "move", archive.dicom_port, archive.aet),
            ("plain Orthanc C-MOVE", "move", plain.dicom_port, plain.aet),
            ("front C-GET", "get", archive.dicom_port, archive.aet),
            ("plain Orthanc C-GET", "get", plain.dicom_port, plain.aet),
        ]
        for entry in plan:  # warm-up: caches, first association, imports
            one(*entry)
        rates.clear()
        cpu.clear()
        for r in range(args.rounds):
            progress(f"round {r + 1}/{args.rounds}")
            for entry in plan:
                one(*entry)
    finally:
        archive.stop()
        plain.stop()
        scp.terminate()
        scp.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)

    best = {name: max(values) for name, values in rates.items()}
    move = ratio(best["front C-MOVE"], best["plain Orthanc C-MOVE"])
    get = ratio(best["front C-GET"], best["plain Orthanc C-MOVE"])
    get_get = ratio(best["front C-GET"], best["plain Orthanc C-GET"])
    print(f"Retrieve of one {n}-instance study ({args.size}x{args.size}) by a workstation")
    for name, rate in best.items():
        print(rate_line(name, rate))
    print(f"load average {os.getloadavg()[0]:.1f}; CPU of the serving process per instance "
          "(median of rounds; the archive's front vs plain Orthanc):")  # fmt: skip
    for name, values in cpu.items():
        print(f"  {name:34s} {sorted(values)[len(values) // 2]:6.2f} ms")
    print(ratio_line("front / plain, C-MOVE", move, TARGET))
    print(ratio_line("front C-GET / plain C-MOVE", get, TARGET))
    print(ratio_line("front / plain, C-GET", get_get, TARGET))
    if args.json:
        emit_json(
            "bench_retrieve",
            {k.replace(" ", "_").replace("-", "").lower(): v for k, v in best.items()},
            {"move_over_plain_move": move, "get_over_plain_move": get,
             "get_over_plain_get": get_get},
            instances=n, target=TARGET,
        )  # fmt: skip


if __name__ == "__main__":
    main()

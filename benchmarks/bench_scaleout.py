"""Scale-out ingest: two archive nodes on one PostgreSQL index against one node, same corpus.

    .venv/bin/python benchmarks/bench_scaleout.py [--count 240] [--size 256]
                                                  [--repeat 1] [--quick] [--json]
                                                  [--storage home|path|postgresql]
                                                  [--hosts]

One throwaway PostgreSQL (tests/postgres.py, fsync on as in production) serves both
configurations, emptied between runs. Each run uses a fresh archive home with
[database] kind = "postgresql" and the full plugin (de-identify, encrypt, audit):
  one node   node 1 only; two storescu associations at once, half the corpus each
  two nodes  nodes 1 and 2 of the home; one association per node, half the corpus each
The client side is identical (two concurrent senders), so the ratio isolates what a
second Orthanc process adds. `--storage` puts the encrypted attachments where [storage]
says (default home; "postgresql": rows of the archive's schema); `--hosts` makes the
second node its own home on 127.0.0.3 (`archive node join`, node 1 on 127.0.0.2), as
nodes on separate hosts run (issue 27; it implies --storage postgresql unless "path").
Each node is warmed up with a few other slices first.
Reference, in the same run on the same PostgreSQL: plain Orthanc 1.10.1 (no plugin, a
file storage area) as one node and as two nodes sharing the index, same senders.
Printed: the rates (instances/s, wall clock from first send to last acknowledgement),
two nodes / one node for each, and the archive's gain over plain Orthanc's gain. Never
asserted. Where the ceiling is: ops/SCALE-OUT.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archive.config import NODE_ENV, load_config  # noqa: E402
from benchmarks._common import (  # noqa: E402
    emit_json,
    make_ct_corpus,
    progress,
    rate_line,
    ratio,
    ratio_line,
)
from tests import postgres  # noqa: E402
from tests.dicom_tools import storescu  # noqa: E402
from tests.harness import (  # noqa: E402
    RunningArchive,
    free_port,
    new_archive,
    register_node,
    run_cli,
)

SCU_AET = "SCALESCU"
PLAIN_AET = "PLAIN"
PG_INDEX_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so")
WARMUP = 4


class Node(RunningArchive):
    """Node N of a home: RunningArchive.start reloads the config as this node sees it."""

    node: int = 1

    def start(self, timeout: float = 90) -> RunningArchive:
        with mock.patch.dict(os.environ, {NODE_ENV: str(self.node)}):
            return super().start(timeout)


def _configure(config_file: Path, storage: dict, host: str | None) -> None:
    import tomllib  # noqa: PLC0415

    import tomli_w  # noqa: PLC0415

    raw = tomllib.loads(config_file.read_text(encoding="utf-8"))
    raw["storage"] = storage
    if host:
        raw.setdefault("http", {})["host"] = host
        raw.setdefault("dicom", {})["host"] = host
    config_file.write_text(tomli_w.dumps(raw), encoding="utf-8")


def _nodes(
    root: Path, pg: postgres.PostgresServer, count: int, storage: str = "home", hosts: bool = False
) -> list[RunningArchive]:
    first = new_archive(root / "home")
    secret = pg.write_password_file(root / "pg.password")
    postgres.use_postgresql(
        first.config.home.config_file,
        pg,
        secret,
        nodes=[] if hosts else [{"id": 2, "http_port": free_port(), "dicom_port": free_port()}],
    )
    section = {"kind": storage}
    if storage == "path":
        section["path"] = str(root / "shared-storage")
    _configure(first.config.home.config_file, section, "127.0.0.2" if hosts else None)
    first.config = load_config(first.home)  # now on PostgreSQL: the sender is registered there
    register_node(first, "bench-scu", SCU_AET, store=True)
    nodes: list[RunningArchive] = [first]
    if hosts:
        for number in range(2, count + 1):
            other = root / f"home-{number}"
            joined = run_cli(
                "node", "join", "--home", str(other), "--from", str(first.home),
                "--http-host", f"127.0.0.{number + 1}", "--http-port", str(free_port()),
                "--dicom-host", f"127.0.0.{number + 1}", "--dicom-port", str(free_port()),
                env=first.env,
            )  # fmt: skip
            if joined.returncode != 0:
                raise SystemExit(f"archive node join failed: {joined.stderr[-400:]}")
            nodes.append(RunningArchive(home=other, config=load_config(other),
                                        serve_args=first.serve_args, env=first.env))  # fmt: skip
        return nodes
    for number in range(2, count + 1):
        node = Node(
            home=first.home,
            config=first.config,
            serve_args=[*first.serve_args, "--node", str(number)],
            env=first.env,
        )
        node.node = number
        nodes.append(node)
    return nodes


def _send_concurrently(targets: list[tuple[RunningArchive, list[Path]]]) -> float:
    failures: list[str] = []

    def send(archive: RunningArchive, files: list[Path]) -> None:
        result = storescu(archive.dicom_port, archive.aet, SCU_AET, files, host=_host(archive))
        if result.returncode != 0:
            failures.append(result.stderr[-400:])

    threads = [threading.Thread(target=send, args=pair) for pair in targets]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"storescu failed: {failures[0]}")
    return elapsed


def _forget_engines() -> None:
    """The database was dropped and created again: this process's cached engines (which
    remember that the archive's schema exists) must not be reused."""
    from archive.db import engine  # noqa: PLC0415

    with engine._engines_lock:
        engine._engines.clear()


def _host(archive) -> str:
    config = getattr(archive, "config", None)
    host = config.dicom.host if config is not None else "127.0.0.1"
    return "127.0.0.1" if host in ("0.0.0.0", "localhost", "") else host  # noqa: S104


def run(
    pg: postgres.PostgresServer,
    work: Path,
    files: list[Path],
    warm: list[Path],
    nodes: int,
    storage: str = "home",
    hosts: bool = False,
) -> float:
    """Instances/s ingesting `files` on `nodes` nodes (1 or 2), two senders either way."""
    pg.reset()
    _forget_engines()
    root = work / f"nodes-{nodes}-{time.monotonic_ns()}"
    root.mkdir()
    archives = _nodes(root, pg, nodes, storage, hosts)
    try:
        for archive in archives:
            archive.start()
        for index, archive in enumerate(archives):  # warm-up: other slices, same path
            storescu(archive.dicom_port, archive.aet, SCU_AET, warm[index :: len(archives)],
                     host=_host(archive))  # fmt: skip
        half = len(files) // 2
        halves = [files[:half], files[half:]]
        targets = [(archives[i % len(archives)], halves[i]) for i in range(2)]
        elapsed = _send_concurrently(targets)
        indexed = int(pg.query("SELECT count(*) FROM resources WHERE resourcetype = 3")[0][0])
        if indexed != len(files) + len(warm):
            raise SystemExit(f"{nodes} node(s): {indexed} instances indexed, expected more")
        return len(files) / elapsed
    finally:
        for archive in reversed(archives):
            archive.stop()
        shutil.rmtree(root, ignore_errors=True)


def _plain_node(root: Path, pg: postgres.PostgresServer, number: int) -> tuple:
    """Plain Orthanc on the shared index (the reference): (process, dicom port)."""
    folder = root / f"plain-{number}"
    folder.mkdir(parents=True)
    http, dicom = free_port(), free_port()
    config = {
        "Name": f"plain-{number}", "StorageDirectory": str(root / "plain-storage"),
        "IndexDirectory": str(folder), "HttpPort": http, "DicomPort": dicom,
        "DicomAet": PLAIN_AET, "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "Plugins": [str(PG_INDEX_PLUGIN)],
        "PostgreSQL": {"EnableIndex": True, "EnableStorage": False, "Host": "127.0.0.1",
                       "Port": pg.port, "Database": pg.database, "Username": pg.user,
                       "Lock": False, "IndexConnectionsCount": 2},
    }  # fmt: skip
    (folder / "orthanc.json").write_text(json.dumps(config), encoding="utf-8")
    secret = pg.password.replace("\\", "\\\\").replace(":", "\\:")  # libpq's escaping
    line = f"127.0.0.1:{pg.port}:{pg.database}:{pg.user}:{secret}\n"
    (folder / "pgpass").write_text(line, encoding="utf-8")
    (folder / "pgpass").chmod(0o600)
    env = {**os.environ, "TCP_NODELAY": "1", "PGPASSFILE": str(folder / "pgpass")}
    process = subprocess.Popen(
        ["/usr/sbin/Orthanc", "--no-jobs", str(folder / "orthanc.json")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{http}/system", timeout=1).status_code == 200:
                return process, dicom
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"plain Orthanc node {number} did not start on the PostgreSQL index")


def run_plain(
    pg: postgres.PostgresServer, work: Path, files: list[Path], warm: list[Path], nodes: int
) -> float:
    """The same measurement with plain Orthanc nodes instead of the archive."""
    pg.reset()
    root = work / f"plain-{nodes}-{time.monotonic_ns()}"
    started = []
    try:
        for number in range(1, nodes + 1):
            started.append(_plain_node(root, pg, number))
        for index, (_, port) in enumerate(started):
            storescu(port, PLAIN_AET, SCU_AET, warm[index :: len(started)])
        half = len(files) // 2
        halves = [files[:half], files[half:]]
        plain = [PlainTarget(started[i % nodes][1]) for i in range(2)]
        return len(files) / _send_concurrently(list(zip(plain, halves, strict=True)))
    finally:
        for process, _ in started:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


class PlainTarget:
    """What `_send_concurrently` needs of a node: its DICOM port and AE title."""

    def __init__(self, dicom_port: int) -> None:
        self.dicom_port, self.aet = dicom_port, PLAIN_AET


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=240, help="instances in the corpus")
    parser.add_argument("--size", type=int, default=256, help="rows/columns per slice")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (best)")
    parser.add_argument("--quick", action="store_true", help="small corpus for make bench")
    parser.add_argument("--json", action="store_true", help="one machine-readable line too")
    parser.add_argument("--storage", choices=("home", "path", "postgresql"), default=None,
                        help="where the encrypted attachments live ([storage] kind)")  # fmt: skip
    parser.add_argument("--hosts", action="store_true",
                        help="node 2 is its own home on 127.0.0.3 (archive node join)")  # fmt: skip
    args = parser.parse_args()
    storage = args.storage or ("postgresql" if args.hosts else "home")
    if args.hosts and storage == "home":
        raise SystemExit("--hosts needs shared storage: --storage postgresql or path.")
    if args.quick:
        args.count, args.size, args.repeat = 120, 256, 1
    if not postgres.available():
        raise SystemExit("PostgreSQL 15 server binaries are missing: run make setup.")
    work = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    try:
        progress(f"corpus: {args.count} CT slices {args.size}x{args.size}")
        files = make_ct_corpus(work / "corpus", args.count, size=args.size, studies=4)
        warm = make_ct_corpus(
            work / "warm", WARMUP, size=args.size, studies=1, patient_prefix="WARM"
        )
        with postgres.PostgresServer(fsync=True) as pg:
            rates: dict[int, float] = {1: 0.0, 2: 0.0}
            plain: dict[int, float] = {1: 0.0, 2: 0.0}
            for _ in range(args.repeat):
                for nodes in (1, 2):
                    progress(f"{nodes} node(s) ...")
                    rate = run(pg, work, files, warm, nodes, storage, args.hosts)
                    rates[nodes] = max(rates[nodes], rate)
                    progress(f"plain Orthanc, {nodes} node(s) ...")
                    plain[nodes] = max(plain[nodes], run_plain(pg, work, files, warm, nodes))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gain = ratio(rates[2], rates[1])
    plain_gain = ratio(plain[2], plain[1])
    relative = ratio(gain, plain_gain) if gain and plain_gain else None
    layout = "separate homes (127.0.0.2/.3)" if args.hosts else "one home"
    print(f"Scale-out ingest, C-STORE, {args.count} slices {args.size}x{args.size}, "
          f"PostgreSQL index, storage {storage}, {layout}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(rate_line("one node (2 senders)", rates[1]))
    print(rate_line("two nodes (1 sender each)", rates[2]))
    print(ratio_line("two nodes / one node", gain))
    print(rate_line("plain Orthanc, one node (reference)", plain[1]))
    print(rate_line("plain Orthanc, two nodes (reference)", plain[2]))
    print(ratio_line("plain Orthanc two / one (reference)", plain_gain))
    print(ratio_line("archive's gain / plain Orthanc's gain", relative))
    if args.json:
        emit_json(
            "scaleout",
            {
                "one_node_per_s": rates[1],
                "two_nodes_per_s": rates[2],
                "plain_one_node_per_s": plain[1],
                "plain_two_nodes_per_s": plain[2],
            },
            {
                "two_nodes_vs_one": gain,
                "plain_two_nodes_vs_one": plain_gain,
                "gain_vs_plain_gain": relative,
            },
            count=args.count,
            size=args.size,
            storage=storage,
            hosts=args.hosts,
            cpus=os.cpu_count(),
        )


if __name__ == "__main__":
    main()

"""Ingest through real Orthanc: the archive (plugin: de-identify, encrypt, audit) against
plain Orthanc 1.10.1 without the plugin, by REST upload and by C-STORE, on one corpus.

    .venv/bin/python benchmarks/bench_ingest.py [--count 300] [--size 512] [--concurrent]
                                                [--repeat 2]
                                                [--methods rest,cstore] [--json] [--quick]

Each (server, method) pair gets a fresh server in a temp dir (a second send of the same
instances would only hit "already stored"), warmed up with a few other slices sent the
same way, then timed on the whole corpus:
  REST     POST /instances, one HTTP keep-alive connection, sequential
           (--concurrent: also 2 clients, each its own connection, half the corpus each)
  C-STORE  one storescu association with every file; TCP_NODELAY=1 in the env of
           Orthanc and storescu (see ARCHIVE.md: Nagle costs ~90 ms per C-STORE)
The archive is reached as a personnel user (HTTP Basic), as an intake operator would.
Target (issue 3): archive/plain >= 0.8 for REST and for C-STORE; printed, never asserted.
Then, for context, the archive's per-instance components timed in-process.
Every process and temp dir is cleaned up, on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from benchmarks._common import (  # noqa: E402
    emit_json,
    make_ct_corpus,
    progress,
    rate_line,
    ratio,
    ratio_line,
)
from tests.dicom_tools import storescu  # noqa: E402
from tests.harness import add_user, base_env, free_port, new_archive, register_node  # noqa: E402

ORTHANC = "/usr/sbin/Orthanc"
SCU_AET = "BENCHSCU"
TARGET = 0.8
WARMUP = 6


class PlainOrthanc:
    """Orthanc 1.10.1 with no plugin, a minimal config, in its own temp dir."""

    name = "plain"
    auth = None
    extra_config: dict = {}  # subclasses (bench_ingest_ceiling.py): plugins, ...
    extra_env: dict = {}

    def __init__(self, root: Path) -> None:
        self.root = root
        self.http_port, self.dicom_port = free_port(), free_port()
        self.aet = "PLAINBENCH"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def storage_dir(self) -> Path:
        return self.root / "storage"

    def start(self, timeout: float = 60) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "PlainBench",
            "StorageDirectory": str(self.storage_dir),
            "IndexDirectory": str(self.root / "index"),
            "TemporaryDirectory": str(self.root / "tmp"),
            "StorageCompression": False,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpCompressionEnabled": False,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": True,
            "StableAge": 2,
            "SaveJobs": False,
            "Plugins": [],
            **self.extra_config,
        }
        path = self.root / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        log = open(self.root / "orthanc.log", "wb")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [ORTHANC, str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=base_env(**self.extra_env),  # TCP_NODELAY=1
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} Orthanc exited; see {self.root / 'orthanc.log'}")
            try:
                with urllib.request.urlopen(self.url + "/system", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} Orthanc did not become ready")

    def instances(self) -> int:
        with urllib.request.urlopen(self.url + "/statistics", timeout=10) as answer:
            return json.loads(answer.read())["CountInstances"]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            if process.poll() is not None:
                break
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass


class ArchiveUnderTest:
    """The archive (Orthanc + plugin) through the test harness, in a fresh home."""

    name = "archive"

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.archive = new_archive(root / "home")
        register_node(self.archive, "bench-scu", SCU_AET, store=True)
        password = add_user(self.archive, "bench-intake", ["personnel"])
        self.auth = ("bench-intake", password)

    url = property(lambda self: self.archive.url)
    dicom_port = property(lambda self: self.archive.dicom_port)
    aet = property(lambda self: self.archive.aet)
    storage_dir = property(lambda self: self.archive.config.home.storage_dir)

    def start(self) -> None:
        self.archive.start()

    def instances(self) -> int:
        return self.archive.counts()["instances"]

    def stop(self) -> None:
        self.archive.stop()


_RUNNING: list = []


def rest_send(server, payloads: list[bytes], clients: int = 1) -> None:
    """POST every payload to /instances; `clients` threads each with one keep-alive link."""
    errors: list[str] = []

    def worker(chunk: list[bytes]) -> None:
        with httpx.Client(base_url=server.url, auth=server.auth, timeout=120) as http:
            for payload in chunk:
                answer = http.post(
                    "/instances", content=payload, headers={"Content-Type": "application/dicom"}
                )
                if answer.status_code != 200:
                    errors.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
                    return

    chunks = [payloads[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=worker, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{server.name} REST upload failed: {errors[0]}")


def cstore_send(server, files: list[Path]) -> None:
    result = storescu(server.dicom_port, server.aet, SCU_AET, files)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{server.name} storescu exited {result.returncode}: {tail}")


def attachments_per_instance(storage_dir: Path, instances: int) -> dict[str, float]:
    """Files written per stored instance, by Orthanc content type (file suffix)."""
    kinds: Counter = Counter()
    for path in storage_dir.rglob("*"):
        if path.is_file():
            kinds[path.suffix.lstrip(".") or "none"] += 1
    return {kind: round(n / instances, 2) for kind, n in sorted(kinds.items())} if instances else {}


def measure(kind: str, method: str, root: Path, files, payloads, warm_files, warm_payloads):
    """One fresh server, warmed up, timed on the corpus; returns (instances/s, details)."""
    server = PlainOrthanc(root) if kind == "plain" else ArchiveUnderTest(root)
    _RUNNING.append(server)
    try:
        progress(f"{kind}: starting for {method}")
        server.start()
        if method == "cstore":
            cstore_send(server, warm_files)
        else:
            rest_send(server, warm_payloads)
        before = server.instances()
        progress(f"{kind}: {method} of {len(files)} instances")
        start = time.perf_counter()
        if method == "cstore":
            cstore_send(server, files)
        elif method == "rest":
            rest_send(server, payloads)
        else:  # rest2
            rest_send(server, payloads, clients=2)
        elapsed = time.perf_counter() - start
        stored = server.instances() - before
        details = {
            "seconds": round(elapsed, 3),
            "stored": stored,
            "files_per_instance": attachments_per_instance(server.storage_dir, before + stored),
        }
        if stored != len(files):
            progress(f"WARNING {kind}/{method}: {stored} of {len(files)} instances stored")
        return len(files) / elapsed, details
    finally:
        server.stop()
        _RUNNING.remove(server)
        shutil.rmtree(root, ignore_errors=True)


def components(files: list[Path], tmp: Path, sample: int = 20) -> dict[str, float]:
    """Median ms per instance of the plugin's steps, timed in-process for context."""
    from pydicom import dcmread

    from archive.audit import AuditEvent, audit_log_for
    from archive.deid import DeidSecrets, deidentify, load_policy
    from archive.paths import POLICIES_DIR, HomePaths
    from archive.vault import EncryptedStore, Keyring
    from archive.vault.envelope import encrypt_bytes
    from archive.vault.fsutil import atomic_write
    from tests.harness import FAST_KDF

    root = tmp / "components"
    ring = Keyring.create(root / "keys" / "keyring.json", "bench passphrase", kdf=FAST_KDF)
    policy = load_policy(POLICIES_DIR)
    secrets = DeidSecrets(pseudonym_key=ring.pseudonym_key)
    store = EncryptedStore(root / "store", ring)
    plain_dir = root / "plain"
    plain_dir.mkdir()
    home = HomePaths(root / "home")
    home.audit_dir.mkdir(parents=True, exist_ok=True)
    audit = audit_log_for(home, signer=ring.audit_signing_key)
    grouped_home = HomePaths(root / "home-grouped")
    grouped_home.audit_dir.mkdir(parents=True, exist_ok=True)
    grouped = audit_log_for(grouped_home, signer=ring.audit_signing_key)
    if hasattr(grouped, "enable_group_commit"):  # as the plugin runs it (50 ms window)
        grouped.enable_group_commit(0.05)
    times: dict[str, list[float]] = {}

    def timed(name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        value = fn(*args, **kwargs)
        times.setdefault(name, []).append((time.perf_counter() - start) * 1000)
        return value

    chosen = files[:sample]
    for path in chosen:  # warm caches and lazy imports
        deidentify(path.read_bytes(), policy, secrets)
    for i, path in enumerate(chosen):
        data = path.read_bytes()
        uuid = f"{i:08x}-0000-0000-0000-000000000000"
        timed("pydicom dcmread (reference)", dcmread, path)
        result = timed("deidentify", deidentify, data, policy, secrets, intake="rest")
        released = result.released or data
        timed("envelope encrypt (in memory)", encrypt_bytes, ring, uuid, 1, released)
        timed("encrypted store write + fsync", store.write, uuid, 1, released)
        target = plain_dir / f"{uuid}.1"
        timed("plain write + fsync (reference)", atomic_write, target, released, sync=True)
        event = AuditEvent(
            action="ingest.released", outcome="success", actor="system", source="rest",
            target="2.25.1", detail={"sop": "2.25.2", "modality": "CT", "policy": "bench"},
        )  # fmt: skip
        timed("audit append (synchronous)", audit.append, event)
        if hasattr(grouped, "enable_group_commit"):
            timed("audit append (group commit)", grouped.append, event)
    if hasattr(grouped, "close"):
        grouped.close()
        atexit.unregister(grouped._close_at_exit)  # its dir is gone by then
    return {name: round(statistics.median(values), 2) for name, values in times.items()}


def ingest_in_process(files: list[Path], tmp: Path, sample: int = 20) -> dict[str, float]:
    """Median ms per instance of the whole IngestService.process (deid, pixel step,
    quarantine/flags tables, audit queue), wired like plugins/ingest.build_service but
    without Orthanc: what one received-instance callback costs in Python."""
    from archive.ingest import IngestService, load_handover
    from archive.ingest import flags as ingest_flags
    from archive.pixels import load_masking_policy
    from archive.runtime import Runtime
    from plugins.services import Services

    archive = new_archive(tmp / "inproc" / "home")
    os.environ["ARCHIVE_KEYRING_PASSPHRASE_FILE"] = archive.env["ARCHIVE_KEYRING_PASSPHRASE_FILE"]
    services = Services(Runtime.open(archive.home))
    services.quarantine()
    policies = services.config.policies_dir
    ingest_flags.ensure_schema(services.db())
    service = IngestService(
        policy=services.deid_policy,
        secrets=services.deid_secrets,
        hold=lambda data, reason, **meta: services.quarantine().hold(data, reason, **meta),
        record=services.record,
        masking=load_masking_policy(policies),
        handover=load_handover(policies, services.deid_policy),
        consent_for=lambda study: services.quarantine().consent_for(study),
        record_flags=lambda study, series, flags: ingest_flags.record_flags(
            services.db(), study, series, flags
        ),
    )
    times = []
    for path in files[:sample]:
        data = path.read_bytes()
        start = time.perf_counter()
        service.process(data, intake="rest", source="rest", actor="bench-intake")
        times.append((time.perf_counter() - start) * 1000)
    services.runtime.audit.close()
    atexit.unregister(services.runtime.audit._close_at_exit)
    return {"IngestService.process (whole callback)": round(statistics.median(times[2:]), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="CT slices in the corpus")
    parser.add_argument("--size", type=int, default=512, help="rows = columns")
    parser.add_argument("--studies", type=int, default=3)
    parser.add_argument("--series", type=int, default=2, help="series per study")
    parser.add_argument("--methods", default="rest,cstore", help="comma list: rest,cstore")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; best of each kept")
    parser.add_argument("--concurrent", action="store_true", help="also REST with 2 clients")
    parser.add_argument("--no-components", action="store_true", help="skip in-process timing")
    parser.add_argument("--quick", action="store_true", help="60 slices (for make bench)")
    parser.add_argument("--json", action="store_true", help="also print one BENCH_JSON line")
    args = parser.parse_args()
    if args.quick:
        args.count = min(args.count, 60)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.concurrent:
        methods.append("rest2")
    unknown = set(methods) - {"rest", "cstore", "rest2"}
    if unknown:
        parser.error(f"unknown method(s): {', '.join(sorted(unknown))}")
    if not os.access(ORTHANC, os.X_OK):
        print(f"{ORTHANC} not found: run `make setup`", file=sys.stderr)
        return 2
    # SIGTERM (e.g. from run_all's timeout) cleans up like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    rates: dict[str, float] = {}
    details: dict[str, dict] = {}
    comp: dict[str, float] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        progress(f"generating {args.count} CT slices {args.size}x{args.size}")
        files = make_ct_corpus(
            tmp / "corpus", args.count, size=args.size, studies=args.studies,
            series_per_study=args.series,
        )  # fmt: skip
        warm = make_ct_corpus(
            tmp / "warm", WARMUP, size=args.size, studies=1, series_per_study=1,
            patient_prefix="WARM",
        )  # fmt: skip
        payloads = [p.read_bytes() for p in files]
        warm_payloads = [p.read_bytes() for p in warm]
        for round_ in range(args.repeat):  # plain and archive alternate: same noise
            for method in methods:
                for kind in ("plain", "archive"):
                    key = f"{kind}_{method}"
                    rate, info = measure(
                        kind, method, tmp / key, files, payloads, warm, warm_payloads
                    )
                    progress(f"{key} round {round_ + 1}: {rate:.1f} instances/s")
                    if rate > rates.get(key, 0.0):
                        rates[key], details[key] = rate, info
        if not args.no_components:
            progress("timing the plugin's steps in-process")
            comp = components(files, tmp)
            try:
                comp.update(ingest_in_process(files, tmp))
            except Exception as exc:  # noqa: BLE001 - context only; the ratios stand
                progress(f"in-process IngestService timing failed: {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        print("interrupted: servers stopped, temp dir removed", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench_ingest failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in list(_RUNNING):
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    size_mb = sum(len(p) for p in payloads) / 1e6
    print(
        f"corpus: {len(files)} CT slices {args.size}x{args.size} 16-bit, GE-like header, "
        f"{args.studies} studies x {args.series} series, {size_mb:.0f} MB; "
        f"best of {args.repeat} round(s), fresh servers each"
    )
    labels = {"rest": "REST 1 client", "rest2": "REST 2 clients", "cstore": "C-STORE 1 assoc"}
    ratios: dict[str, float | None] = {}
    for method in methods:
        plain, ours = rates[f"plain_{method}"], rates[f"archive_{method}"]
        print(rate_line(f"plain Orthanc   {labels[method]}", plain))
        print(rate_line(f"archive         {labels[method]}", ours))
        ratios[f"archive/plain {method}"] = ratio(ours, plain)
        print(ratio_line(f"ratio archive/plain {labels[method]}", ratio(ours, plain), TARGET))
    for key, info in details.items():
        print(
            f"  {key:<16} {info['seconds']:7.2f} s, stored {info['stored']}, "
            f"files per instance {info['files_per_instance']}"
        )
    if comp:
        print("archive steps in-process (median ms per instance, first 20 slices):")
        for name, ms in comp.items():
            print(f"  {name:<34} {ms:7.2f} ms")
    if args.json:
        emit_json(
            "ingest",
            {f"{k} instances/s": round(v, 1) for k, v in rates.items()},
            {k: (round(v, 3) if v is not None else None) for k, v in ratios.items()},
            details=details,
            components_ms=comp,
            count=len(files),
            size=args.size,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Soak: a real archive under mixed load, watched for hangs.

One archive (real Orthanc through `archive serve`, on loopback) is given a few studies,
restarted (so the storage area is cold, the case of issue 15's hangs), and then, until
the time is up, driven at once by:
  - web page loads of the catalogue with its thumbnails (a signed-in trainer);
  - pulls of released cases to a suite workstation (REST, as a trainer);
  - C-STORE ingest of new studies from a registered source (dcmtk storescu);
  - C-FIND and C-MOVE (to itself) from the workstation's own AE (pynetdicom);
  - REST searches of the catalogue.
A watchdog asks `/teaching/health` every half second; any answer slower than 5 s (or
none) is a hang. The figure is the health latency under load beside the same archive's
idle latency measured in the same run (their ratio), with every loop's count and
failures. Everything is bounded in time and count and talks to 127.0.0.1 only.

Run: .venv/bin/python benchmarks/soak.py [--minutes 10] [--json]
Exit status: 0 when there was no hang and no worker died; 1 otherwise.
"""

from __future__ import annotations

import argparse
import html.parser
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from benchmarks._common import emit_json, progress  # noqa: E402
from tests.corpus import make_ct_series, to_bytes  # noqa: E402
from tests.dicom_tools import storescu, write_files  # noqa: E402
from tests.harness import (  # noqa: E402
    RunningArchive,
    add_user,
    base_env,
    client,
    free_port,
    new_archive,
    register_node,
)

HANG_SECONDS = 5.0
HEALTH_EVERY = 0.5
SOURCE_AET = "SOAKSRC"
WS_AET = "SOAKWS"
TRAINER = "soak-trainer"
MAX_OPS_PER_WORKER = 100_000  # a bound besides the clock


@dataclass
class Counter:
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.failed += 1
        if len(self.errors) < 5:
            self.errors.append(what[:200])


@dataclass
class SoakResult:
    seconds: float
    hangs: int
    health_checks: int
    health_idle_median_ms: float
    health_load_median_ms: float
    health_load_max_ms: float
    counters: dict[str, Counter]
    dead_workers: list[str]

    @property
    def passed(self) -> bool:
        return self.hangs == 0 and not self.dead_workers


class _Forms(html.parser.HTMLParser):
    """The hidden inputs of the sign-in form (a CSRF token, if the page has one)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: dict[str, str] = {}
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        attr = dict(attrs)
        if tag == "input" and attr.get("type") == "hidden" and attr.get("name"):
            self.hidden[attr["name"]] = attr.get("value") or ""
        if tag == "img" and attr.get("src"):
            self.images.append(attr["src"])


def _parse(page: str) -> _Forms:
    parser = _Forms()
    parser.feed(page)
    return parser


def web_session(archive: RunningArchive, user: str) -> httpx.Client:
    """A browser-like client signed in through the web form (cookies kept)."""
    web = httpx.Client(base_url=archive.url, timeout=30, follow_redirects=True)
    page = web.get("/teaching/ui/login")
    form = {**_parse(page.text).hidden, "user": user, "password": archive.passwords[user]}
    answer = web.post("/teaching/ui/login", data=form)
    if answer.status_code >= 400:
        raise RuntimeError(f"web sign-in failed: HTTP {answer.status_code}")
    return web


def _study(index: int) -> list[bytes]:
    return [
        to_bytes(ds)
        for ds in make_ct_series(
            3, patient=f"SOAK^PATIENT{index}", patient_id=f"SOAKPID{index:05d}", rows=64, columns=64
        )
    ]


def _send_study(archive: RunningArchive, folder: Path, index: int) -> None:
    files = write_files(folder / f"s{index}", _study(index))
    result = storescu(archive.dicom_port, archive.aet, SOURCE_AET, files)
    if result.returncode != 0:
        raise RuntimeError(f"storescu exit {result.returncode}: {result.stderr[-200:]}")
    shutil.rmtree(folder / f"s{index}", ignore_errors=True)


def wait_released(archive: RunningArchive, count: int, timeout: float = 120) -> list[str]:
    deadline = time.monotonic() + timeout
    with client(archive, TRAINER) as http:
        while time.monotonic() < deadline:
            answer = http.get("/teaching/cases", params={"per_page": 100})
            if answer.status_code == 200:
                items = answer.json().get("items", [])
                ids = [c["case_id"] for c in items if c.get("status", "available") == "available"]
                if len(ids) >= count:
                    return ids
            time.sleep(0.5)
    raise RuntimeError(f"fewer than {count} released cases after {timeout:.0f} s")


def _health_ms(url: str) -> float | None:
    started = time.monotonic()
    try:
        httpx.get(url + "/teaching/health", timeout=HANG_SECONDS)
    except httpx.HTTPError:
        return None
    return (time.monotonic() - started) * 1000


def _find_and_move(archive: RunningArchive, ws_port: int) -> tuple[int, bool]:
    """C-FIND every study, then C-MOVE the first one to the workstation itself."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
    )

    ae = AE(ae_title=WS_AET)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", archive.dicom_port, ae_title=archive.aet)
    if not assoc.is_established:
        raise RuntimeError("association refused")
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        uids = []
        for status, identifier in assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind
        ):
            if getattr(status, "Status", None) in (0xFF00, 0xFF01) and identifier:
                uids.append(str(identifier.StudyInstanceUID))
        moved = True
        if uids:
            move = Dataset()
            move.QueryRetrieveLevel = "STUDY"
            move.StudyInstanceUID = uids[0]
            last = None
            for status, _ in assoc.send_c_move(
                move, WS_AET, StudyRootQueryRetrieveInformationModelMove
            ):
                last = status
            moved = getattr(last, "Status", None) == 0x0000
        return len(uids), moved
    finally:
        assoc.release()


def run_soak(seconds: float, root: Path, *, studies: int = 4, report=progress) -> SoakResult:
    """Run the soak for `seconds` of mixed load; returns the figures (never asserts)."""
    inbox = root / "ws"
    inbox.mkdir(parents=True)
    ws_port = free_port()
    scp = subprocess.Popen(
        # --fork: one process per association, as a real workstation takes a pull and a
        # C-MOVE at once (a single-threaded peer would queue one behind the other).
        ["storescp", "--fork", "-aet", WS_AET, "--output-directory", str(inbox), str(ws_port)],
        env=base_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    archive = new_archive(root / "home")
    try:
        register_node(archive, "soak-source", SOURCE_AET, store=True)
        added = archive.cli(
            "workstations", "add", "soak-ws", "--aet", WS_AET, "--host", "127.0.0.1",
            "--port", str(ws_port), "--location", "soak room",
        )  # fmt: skip
        if added.returncode != 0:
            raise RuntimeError(f"workstations add failed: {added.stdout}{added.stderr}")
        add_user(archive, TRAINER, ["trainer"])
        archive.start()
        report(f"archive up at {archive.url}; sending {studies} studies")
        for index in range(studies):
            _send_study(archive, root, index)
        wait_released(archive, studies)
        report("restarting, so that the soak starts on a cold archive")
        archive.stop()
        archive.start()
        idle = [ms for ms in (_health_ms(archive.url) for _ in range(10)) if ms is not None]
        return _drive(archive, root, seconds, ws_port, inbox, idle, studies, report)
    finally:
        archive.stop()
        scp.terminate()
        try:
            scp.wait(timeout=10)
        except subprocess.TimeoutExpired:
            scp.kill()


def _drive(archive, root, seconds, ws_port, inbox, idle, studies, report) -> SoakResult:
    stop = threading.Event()
    counters = {name: Counter() for name in ("web", "pull", "cstore", "find_move", "search")}
    latencies: list[float] = []
    hangs = 0
    started = time.monotonic()
    deadline = started + seconds
    next_study = [studies]
    study_lock = threading.Lock()

    def loop(name: str, body) -> None:
        counter = counters[name]
        for _ in range(MAX_OPS_PER_WORKER):
            if stop.is_set() or time.monotonic() > deadline:
                return
            try:
                body()
                counter.ok += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported
                counter.fail(f"{type(exc).__name__}: {exc}")
                time.sleep(0.5)

    def web_body_factory():
        session = {"web": None}

        def body() -> None:
            if session["web"] is None:
                session["web"] = web_session(archive, TRAINER)
            web = session["web"]
            page = web.get("/teaching/ui/cases")
            if page.status_code != 200:
                session["web"] = None
                raise RuntimeError(f"catalogue page HTTP {page.status_code}")
            for src in _parse(page.text).images[:12]:
                image = web.get(src)
                if image.status_code != 200:
                    raise RuntimeError(f"thumbnail HTTP {image.status_code}")

        return body

    rest = client(archive, TRAINER)

    def pull_body() -> None:
        cases = wait_released(archive, 1, timeout=10)
        answer = rest.post("/teaching/pulls", json={"workstation": "soak-ws", "cases": cases[:1]})
        if answer.status_code != 200:
            raise RuntimeError(f"pull HTTP {answer.status_code}: {answer.text[:120]}")
        settled = time.time() - 30  # never a file the workstation may still be writing
        for path in list(inbox.iterdir())[:500]:  # the workstation's disk stays bounded
            try:
                if path.stat().st_mtime < settled:
                    path.unlink()
            except FileNotFoundError:
                pass

    def cstore_body() -> None:
        with study_lock:
            index = next_study[0]
            next_study[0] += 1
        _send_study(archive, root, index)
        time.sleep(1.0)

    def find_move_body() -> None:
        found, moved = _find_and_move(archive, ws_port)
        if not found or not moved:
            raise RuntimeError(f"C-FIND found {found} studies, C-MOVE success={moved}")

    def search_body() -> None:
        for term in ("chest", "CT", "soak", "fracture"):
            answer = rest.get("/teaching/cases", params={"q": term})
            if answer.status_code != 200:
                raise RuntimeError(f"search HTTP {answer.status_code}")

    workers = [
        threading.Thread(target=loop, args=("web", web_body_factory()), name="web"),
        threading.Thread(target=loop, args=("pull", pull_body), name="pull"),
        threading.Thread(target=loop, args=("cstore", cstore_body), name="cstore"),
        threading.Thread(target=loop, args=("find_move", find_move_body), name="find_move"),
        threading.Thread(target=loop, args=("search", search_body), name="search"),
    ]
    for worker in workers:
        worker.daemon = True
        worker.start()
    last_report = started
    try:
        while time.monotonic() < deadline:
            ms = _health_ms(archive.url)
            if ms is None or ms > HANG_SECONDS * 1000:
                hangs += 1
                report(f"HANG: /teaching/health did not answer within {HANG_SECONDS:.0f} s")
            else:
                latencies.append(ms)
            now = time.monotonic()
            if now - last_report >= 30:
                last_report = now
                done = ", ".join(f"{k} {v.ok}/{v.failed}" for k, v in counters.items())
                report(f"{now - started:5.0f}/{seconds:.0f} s: ok/failed {done}; hangs {hangs}")
            time.sleep(HEALTH_EVERY)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
        rest.close()
    dead = [w.name for w in workers if w.is_alive()]
    load = latencies or [float("nan")]
    return SoakResult(
        seconds=time.monotonic() - started,
        hangs=hangs,
        health_checks=len(latencies) + hangs,
        health_idle_median_ms=statistics.median(idle) if idle else float("nan"),
        health_load_median_ms=statistics.median(load),
        health_load_max_ms=max(load),
        counters=counters,
        dead_workers=dead,
    )


def print_result(result: SoakResult) -> None:
    print(f"soak: {result.seconds:.0f} s, {result.health_checks} health checks, "
          f"{result.hangs} hang(s) (health slower than {HANG_SECONDS:.0f} s)")  # fmt: skip
    ratio = result.health_load_median_ms / result.health_idle_median_ms
    print(f"health latency, median: {result.health_load_median_ms:.1f} ms under load vs "
          f"{result.health_idle_median_ms:.1f} ms idle (same run): {ratio:.2f}x; "
          f"max under load {result.health_load_max_ms:.0f} ms")  # fmt: skip
    for name, counter in result.counters.items():
        print(f"  {name:10s} ok {counter.ok:6d}  failed {counter.failed:4d}  "
              f"{'; '.join(counter.errors[:2])}")  # fmt: skip
    if result.dead_workers:
        print(f"workers that did not stop: {', '.join(result.dead_workers)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        result = run_soak(args.minutes * 60, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_result(result)
    if args.json:
        emit_json(
            "soak",
            {
                "seconds": round(result.seconds),
                "hangs": result.hangs,
                "health_idle_median_ms": round(result.health_idle_median_ms, 1),
                "health_load_median_ms": round(result.health_load_median_ms, 1),
                "health_load_max_ms": round(result.health_load_max_ms),
                "ops": {k: {"ok": v.ok, "failed": v.failed} for k, v in result.counters.items()},
            },
            {
                "health_load_vs_idle": round(
                    result.health_load_median_ms / result.health_idle_median_ms, 2
                )
            },
        )
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())

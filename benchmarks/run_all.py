"""Run every benchmarks/bench_*.py, collect their figures and ratios into one report.

    .venv/bin/python benchmarks/run_all.py [--full] [--only ingest,deid] [--timeout 900]

By default each benchmark runs with small/quick arguments (`make bench` stays in minutes
on a 2-core machine); --full runs them with their own defaults. A benchmark that fails
or times out is reported as such and the others still run. Output of each benchmark is
shown live; the report goes to benchmarks/out/report.md (gitignored) and a summary is
printed at the end. Exit status 1 if any benchmark failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "out"
JSON_PREFIX = "BENCH_JSON "  # as in _common.py (kept literal: this file runs standalone)

# Small arguments per benchmark for `make bench`. A script not listed here gets --quick
# if its --help mentions it, and --json likewise.
QUICK_ARGS: dict[str, list[str]] = {
    "bench_auth.py": ["--seconds", "2", "--rounds", "2"],
    "bench_ingest.py": ["--quick"],
    "bench_ingest_ceiling.py": ["--count", "60", "--rounds", "1"],
    "bench_face_records.py": ["--slices", "200"],
    "bench_deid.py": ["--slices", "100", "--rounds", "1"],
    "bench_crypto.py": ["--large-mib", "128", "--files", "100", "--repeat", "2"],
    "bench_pull.py": ["--instances", "60", "--rounds", "1"],
    "bench_retrieve.py": ["--instances", "60", "--rounds", "1"],
    "bench_watch.py": ["--count", "60"],
    "bench_ocr.py": ["--slices", "100", "--repeats", "2", "--us-frames", "5"],
    "bench_search.py": ["--cases", "20000", "--queries", "150"],
    "bench_viewer.py": ["--slices", "200", "--size", "256", "--rounds", "3"],
}
# Lines of a benchmark's output that carry a figure worth putting in the summary.
FIGURE_LINE = re.compile(r"ratio|target|x\s*\(|/s\b|GB/s|p95", re.IGNORECASE)


@dataclass
class Result:
    name: str
    command: list[str]
    returncode: int | None = None
    seconds: float = 0.0
    output: list[str] = field(default_factory=list)
    data: dict | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def status(self) -> str:
        if self.timed_out:
            return "TIMED OUT"
        return "ok" if self.ok else f"FAILED (exit {self.returncode})"

    def figure_lines(self) -> list[str]:
        return [
            line.rstrip()
            for line in self.output
            if FIGURE_LINE.search(line)
            and not line.startswith(JSON_PREFIX)
            and not line.lstrip().startswith("..")
        ]


def supports(script: Path, option: str) -> bool:
    try:
        helptext = subprocess.run(
            [sys.executable, str(script), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
    except subprocess.TimeoutExpired:
        return False
    return option in helptext


def command_for(script: Path, full: bool) -> list[str]:
    args = [] if full else list(QUICK_ARGS.get(script.name, []))
    if not full and script.name not in QUICK_ARGS and supports(script, "--quick"):
        args.append("--quick")
    if supports(script, "--json"):
        args.append("--json")
    return [sys.executable, str(script), *args]


def run(script: Path, full: bool, timeout: float) -> Result:
    result = Result(name=script.stem.removeprefix("bench_"), command=command_for(script, full))
    print(f"\n=== {result.name}: {' '.join(Path(a).name for a in result.command[1:])}", flush=True)
    start = time.monotonic()
    process = subprocess.Popen(
        result.command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        cwd=HERE.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )

    def expire() -> None:
        result.timed_out = True
        _terminate(process)

    watchdog = threading.Timer(timeout, expire)  # fires even when the script prints nothing
    watchdog.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:  # live progress
            if line.startswith(JSON_PREFIX):
                try:
                    result.data = json.loads(line[len(JSON_PREFIX) :])
                except ValueError:
                    pass
            else:
                print(f"  {line}", end="", flush=True)
            result.output.append(line)
        result.returncode = process.wait()
    except KeyboardInterrupt:
        _terminate(process)
        raise
    finally:
        watchdog.cancel()
    result.seconds = time.monotonic() - start
    print(f"=== {result.name}: {result.status} in {result.seconds:.0f} s", flush=True)
    return result


def _terminate(process: subprocess.Popen) -> None:
    """SIGTERM the benchmark's group (it cleans up its servers), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.node()}: {cpu}, {os.cpu_count()} cores, Linux {platform.release()}; load {load}"
    )


def report(results: list[Result], full: bool, started: datetime) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"- date: {started:%Y-%m-%d %H:%M}",
        f"- machine: {machine()}",
        f"- mode: {'full (script defaults)' if full else 'quick (make bench)'}",
        "- how to read: ops/BENCHMARKS.md",
        "",
        "| benchmark | status | time |",
        "|---|---|---|",
    ]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.0f} s |" for r in results]
    for r in results:
        lines += ["", f"## {r.name}", "", f"`{' '.join(r.command[1:])}` - {r.status}", ""]
        if r.data:
            for key, value in r.data.get("figures", {}).items():
                lines.append(f"- {key}: {value}")
            for key, value in r.data.get("ratios", {}).items():
                lines.append(f"- **{key}: {value}x**" if value is not None else f"- {key}: n/a")
            lines.append("")
        lines += ["```", *(x.rstrip() for x in r.output if not x.startswith(JSON_PREFIX)), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="each script's own defaults")
    parser.add_argument("--only", default="", help="comma list of names, e.g. ingest,deid")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per benchmark")
    args = parser.parse_args()
    wanted = {n.strip().removeprefix("bench_") for n in args.only.split(",") if n.strip()}
    scripts = sorted(HERE.glob("bench_*.py"))
    if wanted:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    if not scripts:
        print("no benchmark matched", file=sys.stderr)
        return 2
    started = datetime.now()
    results: list[Result] = []
    try:
        for index, script in enumerate(scripts, 1):
            print(f"\n[{index}/{len(scripts)}] {script.name}", flush=True)
            try:
                results.append(run(script, args.full, args.timeout))
            except OSError as exc:
                failed = Result(name=script.stem.removeprefix("bench_"), command=[script.name])
                failed.output = [f"could not start: {exc}\n"]
                results.append(failed)
    except KeyboardInterrupt:
        print("\ninterrupted: report covers the benchmarks that finished", file=sys.stderr)
    OUT_DIR.mkdir(exist_ok=True)
    target = OUT_DIR / "report.md"
    target.write_text(report(results, args.full, started), encoding="utf-8")

    print("\n==================== summary ====================")
    for r in results:
        print(f"{r.name:<10} {r.status} ({r.seconds:.0f} s)")
        for line in r.figure_lines():
            print(f"    {line.strip()}")
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(f"FAILED: {', '.join(failed)} (see {target})")
    print(f"report: {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

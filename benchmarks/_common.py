"""Shared helpers of the benchmark scripts: corpus, timing, ratio lines, JSON result line.

Every benchmark prints human lines (a figure, its reference from the same run, their
ratio) and, with --json, one machine-readable line starting with `BENCH_JSON ` that
`run_all.py` collects into the report. Ratios are printed whatever they are; a benchmark
never asserts on timings.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

JSON_PREFIX = "BENCH_JSON "


def progress(message: str) -> None:
    """A progress line on stderr (stdout stays for figures)."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


def make_ct_corpus(
    folder: Path,
    count: int,
    *,
    size: int = 512,
    studies: int = 3,
    series_per_study: int = 2,
    vendor_header: bool = True,
    patient_prefix: str = "BENCH",
) -> list[Path]:
    """Write `count` CT slices (size x size, 16-bit) spread over several patients/studies/
    series into `folder`; returns the files in sending order (series after series)."""
    from tests import corpus

    folder.mkdir(parents=True, exist_ok=True)
    groups = max(1, studies * series_per_study)
    per_group = [count // groups + (1 if g < count % groups else 0) for g in range(groups)]
    paths: list[Path] = []
    for study in range(studies):
        study_uid = None
        for series in range(series_per_study):
            n = per_group[study * series_per_study + series]
            if n == 0:
                continue
            slices = corpus.make_ct_series(
                n,
                patient=f"{patient_prefix}FAMILY{study}^GIVEN",
                patient_id=f"{patient_prefix}PID{study:03d}",
                rows=size,
                columns=size,
                study_uid=study_uid,
                series_number=series + 1,
                seed=study * 100 + series,
                vendor_header=vendor_header,
            )
            study_uid = str(slices[0].StudyInstanceUID)
            for i, ds in enumerate(slices):
                path = folder / f"{patient_prefix.lower()}-s{study}-r{series}-{i:04d}.dcm"
                path.write_bytes(corpus.to_bytes(ds))
                paths.append(path)
    return paths


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """`with stopwatch() as elapsed: ...; elapsed()` -> seconds (frozen at exit)."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def best_rate(fn: Callable[[], int], rounds: int) -> float:
    """Best items/s of `rounds` calls of fn (which returns how many items it handled)."""
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        items = fn()
        best = max(best, items / (time.perf_counter() - start))
    return best


def rate_line(label: str, rate: float, unit: str = "instances/s", width: int = 34) -> str:
    return f"{label:<{width}} {rate:9.1f} {unit}"


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def ratio_line(
    label: str, value: float | None, target: float | None = None, width: int = 34
) -> str:
    """`label   0.83x  (target >= 0.8: met)`; never raises, never asserts."""
    if value is None:
        return f"{label:<{width}}       n/a"
    text = f"{label:<{width}} {value:9.2f}x"
    if target is not None:
        text += f"  (target >= {target}: {'met' if value >= target else 'NOT met'})"
    return text


def emit_json(benchmark: str, figures: dict, ratios: dict, **extra) -> None:
    """The one machine-readable result line read by run_all.py."""
    line = {"benchmark": benchmark, "figures": figures, "ratios": ratios, **extra}
    print(JSON_PREFIX + json.dumps(line, sort_keys=True), flush=True)

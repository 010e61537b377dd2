"""De-identification throughput vs dicognito (in-process) and bare pydicom read+write.

    .venv/bin/python benchmarks/bench_deid.py [--slices 300] [--size 512] [--rounds 3]

Generates a CT series and times each contender on it in memory, bytes in and bytes out
(what ingest does; `--files` reads and writes a file around each slice, as this script
did before issue 26: the file I/O, the same for all, then dominates); contenders are
interleaved round by round and the best of --rounds is reported. The engine is measured as
ingest runs it (`deidentify`: the raw-element path, archive/deid/raw.py) and, beside it,
its full pydicom path (`deidentify_full`, what the raw path falls back to). Targets
(issue 26): the engine >= 2x bare pydicom read+write and >= 8x dicognito.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydicom import dcmread  # noqa: E402

from archive.deid import DeidSecrets, deidentify, load_policy  # noqa: E402
from archive.deid.engine import deidentify_full  # noqa: E402
from archive.paths import POLICIES_DIR  # noqa: E402
from tests import corpus  # noqa: E402


def _make(folder: Path, slices: int, size: int, vendor: bool) -> list[Path]:
    paths = []
    series = corpus.make_ct_series(slices, rows=size, columns=size, vendor_header=vendor)
    for i, ds in enumerate(series):
        p = folder / f"ct{i:04d}.dcm"
        p.write_bytes(corpus.to_bytes(ds))
        paths.append(p)
    return paths


def _rates(contenders: dict, items: list, rounds: int, files: Path | None) -> dict[str, float]:
    """Best slices/s of each contender, the contenders interleaved round by round (the
    host is shared: a burst of load then hits all of them alike). In memory (bytes in,
    bytes out: what ingest does) unless `files` is a folder: then each slice is read
    from its file and the result written to one, for every contender."""
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            if files is None:
                for data in items:
                    fn(data)
            else:
                for p in items:
                    (files / p.name).write_bytes(fn(p.read_bytes()))
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(items) / t for name, t in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--files", action="store_true", help="read and write files around each contender"
    )
    ap.add_argument(
        "--plain-header", action="store_true", help="minimal header instead of a GE CT header"
    )
    args = ap.parse_args()
    policy = load_policy(POLICIES_DIR)
    secrets = DeidSecrets(b"\x42" * 32)
    with tempfile.TemporaryDirectory(prefix="bench-deid-") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        src.mkdir()
        out.mkdir()
        paths = _make(src, args.slices, args.size, not args.plain_header)

        def ours(data: bytes) -> bytes:
            result = deidentify(data, policy, secrets)
            if result.released is None:
                raise SystemExit(f"unexpected quarantine: {result.quarantine_reason}")
            if result.path != "raw":
                raise SystemExit("the raw-element path declined a benchmark slice")
            return result.released

        def full(data: bytes) -> bytes:
            result = deidentify_full(data, policy, secrets)
            if result.released is None:
                raise SystemExit(f"unexpected quarantine: {result.quarantine_reason}")
            return result.released

        def bare(data: bytes) -> bytes:
            out = BytesIO()
            dcmread(BytesIO(data)).save_as(out)
            return out.getvalue()

        try:
            from dicognito.anonymizer import Anonymizer
        except ImportError:
            Anonymizer = None  # noqa: N806
        anonymizer = Anonymizer() if Anonymizer else None

        def dicognito(data: bytes) -> bytes:
            ds = dcmread(BytesIO(data))
            anonymizer.anonymize(ds)
            out = BytesIO()
            ds.save_as(out)
            return out.getvalue()

        contenders = {"ours": ours, "full": full, "bare": bare}
        if anonymizer is not None:
            contenders["dicognito"] = dicognito
        items = paths if args.files else [p.read_bytes() for p in paths]
        rates = _rates(contenders, items, args.rounds, out if args.files else None)
        ours_rate, full_rate, bare_rate = rates["ours"], rates["full"], rates["bare"]
        header = "minimal header" if args.plain_header else "GE CT header (std + private)"
        where = "file to file" if args.files else "in memory, bytes to bytes (as ingest runs it)"
        print(f"corpus: {args.slices} CT slices {args.size}x{args.size} 16-bit, {header}; {where}")
        print(f"load average: {os.getloadavg()[0]:.2f}")
        print(f"deid, raw-element path  {ours_rate:8.1f} slices/s  (deidentify, as ingest runs it)")
        print(f"deid, full path         {full_rate:8.1f} slices/s  (deidentify_full, the fallback)")
        print(f"pydicom read+write      {bare_rate:8.1f} slices/s")
        if anonymizer is not None:
            dicog_rate = rates["dicognito"]
            print(f"dicognito in-process    {dicog_rate:8.1f} slices/s")
            print(f"ratio deid/dicognito    {ours_rate / dicog_rate:8.2f}x  (target >= 8)")
            print(f"ratio full/dicognito    {full_rate / dicog_rate:8.2f}x")
        else:
            print("dicognito not installed: ratio not measured")
        print(f"ratio deid/pydicom      {ours_rate / bare_rate:8.2f}x  (target >= 2)")
        print(f"ratio full/pydicom      {full_rate / bare_rate:8.2f}x")
        pixel_step_cost(paths[: min(len(paths), 100)], policy, secrets, ours_rate)
        callback_cost([p.read_bytes() for p in paths[:60]], policy, secrets, args.rounds)


def pixel_step_cost(paths: list[Path], policy, secrets, deid_rate: float) -> None:
    """Issue 24: what ingest's pixel step adds to a CT slice: the header-only path for a
    5 mm slice, and the face check (a quarter-resolution read) for a 1 mm one. OCR never
    runs on these (no text indicators)."""
    import io

    from archive.ingest.pixelstep import check_pixels
    from archive.pixels import load_masking_policy

    masking = load_masking_policy(POLICIES_DIR)
    thick, thin = [], []
    for p in paths:
        released = deidentify(p.read_bytes(), policy, secrets).released
        ds = dcmread(io.BytesIO(released))
        ds.SliceThickness = "5"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        thick.append(buf.getvalue())
        ds.SliceThickness = "1"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        thin.append(buf.getvalue())

    def once(items: list[bytes]) -> float:
        t0 = time.perf_counter()
        for data in items:
            outcome = check_pixels(data, masking)
            assert outcome.action == "release", outcome.reasons
        return len(items) / (time.perf_counter() - t0)

    rates: dict[str, list[float]] = {"thick": [], "thin": []}
    for _ in range(7):  # interleaved, best of 7: the host is shared and noisy
        rates["thick"].append(once(thick))
        rates["thin"].append(once(thin))
    r_thick, r_thin = max(rates["thick"]), max(rates["thin"])
    per_deid = 1000.0 / deid_rate
    print(f"pixel step, 5 mm CT     {1000 / r_thick:8.2f} ms/slice (header only)")
    print(f"pixel step, 1 mm CT     {1000 / r_thin:8.2f} ms/slice (with the face check)")
    print(
        f"ingest cost deid+pixels / deid: 5 mm {(per_deid + 1000 / r_thick) / per_deid:.3f}x, "
        f"1 mm {(per_deid + 1000 / r_thin) / per_deid:.3f}x"
    )


def callback_cost(items: list[bytes], policy, secrets, rounds: int) -> None:
    """Issue 26: de-identification + pixel step per slice, as the ingest callback runs
    them: the full path followed by the pixel step's own header parse (before) against
    the raw path handing its header over (now). Interleaved, best of `rounds`."""
    from archive.ingest.pixelstep import check_pixels
    from archive.pixels import load_masking_policy

    masking = load_masking_policy(POLICIES_DIR)

    def before(data: bytes) -> None:
        result = deidentify_full(data, policy, secrets)
        assert check_pixels(result.released, masking).action == "release"

    def now(data: bytes) -> None:
        result = deidentify(data, policy, secrets)
        assert check_pixels(result.released, masking, header=result.header).action == "release"

    rates = _rates({"before": before, "now": now}, items, max(rounds, 3), None)
    print(f"deid + pixel step, before (full path + header parse) {1000 / rates['before']:6.2f} ms")
    print(f"deid + pixel step, now (raw path, header handed)     {1000 / rates['now']:6.2f} ms")
    speed = rates["now"] / rates["before"]
    print(f"ratio now/before (speed)                             {speed:6.2f}x")


if __name__ == "__main__":
    main()

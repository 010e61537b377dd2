"""The face slices' records per ingested slice (issue 26): record_face_slice against the
series result read back after every slice (what it did before), same run, interleaved.

    .venv/bin/python benchmarks/bench_face_records.py [--slices 300] [--json]

Two series of `--slices` thin slices each, on two real archive.db files (WAL,
synchronous=FULL), one transaction and commit per slice as the ingest callback does:
a head series (facial outline on a band of slices in the middle, flagged once covered)
and a body series (no facial slice). Per slice: the ms of record_face_slice and of the
reference (insert + the series' rows read back + flag when covered), medians and the
last tenth of the series (where the reference reads the most rows). Printed, never
asserted; the flags both record are checked equal (else it stops).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import emit_json, ratio, ratio_line  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300, help="slices per series")
    parser.add_argument("--json", action="store_true", help="also print one BENCH_JSON line")
    args = parser.parse_args()

    from archive import db
    from archive.core import transaction
    from archive.ingest.flags import (
        _REPLACE_FACE_SLICE,
        FACE_SURFACE_FLAG,
        ensure_schema,
        record_face_slice,
        record_flags,
        series_face_result,
    )
    from archive.paths import POLICIES_DIR
    from archive.pixels import load_masking_policy
    from archive.pixels.face import SliceFace

    rules = load_masking_policy(POLICIES_DIR).facial

    def reference(conn, study, series, sop, face):
        ensure_schema(conn)
        conn.execute(
            db.prepared(conn, _REPLACE_FACE_SLICE),
            {"study_uid": study, "series_uid": series, "sop_uid": sop,
             "position": face.position, "thickness": face.thickness,
             "head_sized": int(face.head_sized), "protrusion_mm": face.protrusion_mm},
        )  # fmt: skip
        if series_face_result(conn, study, series, rules).covered:
            record_flags(conn, study, series, [FACE_SURFACE_FLAG])

    n = args.slices
    band = range(n // 3, n // 3 + max(40, n // 5))
    series = {
        "head": [SliceFace(k * 0.625, 0.625, True, 20.0 if k in band else 2.0) for k in range(n)],
        "body": [SliceFace(k * 0.625, 0.625, k % 2 == 0, 3.0) for k in range(n)],
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-face-"))
    conns = {"new": db.connect(tmp / "new.db"), "reference": db.connect(tmp / "ref.db")}
    for conn in conns.values():
        ensure_schema(conn)
    fns = {
        "new": lambda c, *a: record_face_slice(c, *a, rules),
        "reference": reference,
    }
    times: dict[str, list[float]] = {}
    for name, slices in series.items():
        for k, face in enumerate(slices):
            order = ("new", "reference") if k % 2 else ("reference", "new")
            for who in order:
                conn = conns[who]
                start = time.perf_counter()
                with transaction(conn):
                    fns[who](conn, "1.2.826.0.1", f"1.2.826.0.1.{name}", f"1.2.{name}.{k}", face)
                times.setdefault(f"{who} {name}", []).append((time.perf_counter() - start) * 1e3)
    flags = {
        who: [tuple(r) for r in c.execute("SELECT series_uid, flag FROM ingest_flags ORDER BY 1")]
        for who, c in conns.items()
    }
    if flags["new"] != flags["reference"]:
        print(f"FLAGS DIFFER: {flags}", file=sys.stderr)
        return 1
    print(f"{n} slices per series, one commit per slice (archive.db, synchronous=FULL); "
          f"flags recorded (both): {flags['new']}")  # fmt: skip
    figures, ratios = {}, {}
    for name in series:
        for part, cut in (("median", slice(None)), ("last tenth", slice(-(n // 10), None))):
            new = statistics.median(times[f"new {name}"][cut])
            ref = statistics.median(times[f"reference {name}"][cut])
            figures[f"{name} {part} ms new"] = round(new, 3)
            figures[f"{name} {part} ms reference"] = round(ref, 3)
            ratios[f"{name} {part} speed-up"] = ratio(ref, new)
            print(f"{name} series, {part:<10} ms/slice: new {new:6.3f}  reference {ref:6.3f}  "
                  + ratio_line("speed-up", ratio(ref, new), width=8))  # fmt: skip
    if args.json:
        emit_json("face_records", figures, ratios, slices=n)
    return 0


if __name__ == "__main__":
    sys.exit(main())

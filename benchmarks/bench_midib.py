"""MIDI-B-style score of the archive's ingest pipeline, beside dicognito's, same corpus.

The planted corpus of tests/midib.py (distinct values at every depth: header, nested
sequences, free text, burnt into pixels), built for --patients patients, goes through
the archive's own ingest pipeline (header engine, free text, pixels, face) and, as the
reference, through dicognito (header only; it never looks at pixels). Each category is
printed as a percentage for both, with the archive's figure over the reference's.

Run: .venv/bin/python benchmarks/bench_midib.py [--patients 6] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archive.paths import POLICIES_DIR  # noqa: E402
from tests.midib import build_corpus, run_pipeline, score_outputs  # noqa: E402

JSON_PREFIX = "BENCH_JSON "


def dicognito_outputs(corpus) -> dict[str, bytes | None]:
    from dicognito.anonymizer import Anonymizer
    from pydicom import dcmread

    anonymizer = Anonymizer(seed="bench-midib")
    out: dict[str, bytes | None] = {}
    for item in corpus.instances:
        ds = dcmread(BytesIO(item.data))
        anonymizer.anonymize(ds)
        buf = BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out[item.name] = buf.getvalue()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=6)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    corpus = build_corpus(patients=args.patients)
    t0 = time.perf_counter()
    ours = score_outputs(corpus, run_pipeline(corpus, POLICIES_DIR))
    t_ours = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        ref = score_outputs(corpus, dicognito_outputs(corpus))
        t_ref = time.perf_counter() - t0
    except ImportError:
        ref, t_ref = None, 0.0
    n = len(corpus.instances)
    print(f"MIDI-B-style score, {n} planted instances ({args.patients} patients)")
    print(f"  {'category':22s} {'archive':>9s} {'dicognito':>10s}   ratio")
    result = {}
    for name in ours.counts:
        mine = ours.percent(name)
        theirs = ref.percent(name) if ref else float("nan")
        ratio = mine / theirs if ref and theirs else float("inf")
        print(f"  {name:22s} {mine:8.2f}% {theirs:9.2f}%   {ratio:.3f}")
        result[name] = {"archive": round(mine, 2), "dicognito": round(theirs, 2)}
    print(
        f"  archive released {ours.released}, held {ours.held}; "
        f"validator {ours.validator}; time {t_ours:.1f} s (dicognito {t_ref:.1f} s)"
    )
    target = all(ours.percent(n) >= 99.95 for n in ours.counts)
    legible = ours.counts["pixel_text_hidden"][1] - ours.counts["pixel_text_hidden"][0]
    print(f"  target >= 99.95% in every category: {'met' if target else 'NOT met'}; "
          f"legible pixel text released: {legible}")  # fmt: skip
    if args.json:
        print(JSON_PREFIX + json.dumps({"bench": "midib", "categories": result}))


if __name__ == "__main__":
    main()

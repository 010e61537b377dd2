"""Watch-folder throughput vs direct REST upload of the same files (target >= 0.8x).

One run, two fresh archives (so neither answers AlreadyStored), the same CT corpus:
- reference: a keep-alive HTTP client POSTs each file to /instances, one after another;
- project: the files sit in a drop folder and `Intake.run_once()` ingests them (hash,
  journal, upload, confirmation, audit, deletion).

    .venv/bin/python benchmarks/bench_watch.py [--count 120] [--size 256] [--json]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import REPO, emit_json, make_ct_corpus, progress, rate_line, ratio, ratio_line

from archive import db
from archive.access import AccessStore
from archive.intake import Intake, Uploader, load_settings
from tests.harness import add_user, new_archive


def _token(archive) -> str:
    add_user(archive, "intake", ["personnel"])
    conn = db.connect(archive.config.home.db_path)
    try:
        return AccessStore(conn).create_token("intake", datetime.now(UTC))[1]
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=120)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    try:
        corpus = make_ct_corpus(work / "corpus", args.count, size=args.size)
        payloads = [p.read_bytes() for p in corpus]
        # Reference: direct REST upload.
        (work / "direct").mkdir()
        direct = new_archive(work / "direct" / "home")
        token = _token(direct)
        direct.start()
        try:
            uploader = Uploader(direct.url, token, workers=1)
            uploader.upload(payloads[0])  # warm-up (counted once, it is stored)
            start = time.perf_counter()
            for data in payloads[1:]:
                result = uploader.upload(data)
                assert result.verdict.confirmed, result
            direct_rate = (len(payloads) - 1) / (time.perf_counter() - start)
            uploader.close()
        finally:
            direct.stop()
        progress(f"direct REST: {direct_rate:.1f}/s")
        # Project: the watch folder on a fresh archive.
        (work / "watch").mkdir()
        watched = new_archive(work / "watch" / "home")
        token = _token(watched)
        watched.start()
        try:
            settings = load_settings(watched.config)
            uploader = Uploader(watched.url, token, workers=settings.workers)
            uploader.upload(payloads[0])  # same warm-up
            drop = work / "drop"
            drop.mkdir()
            for i, data in enumerate(payloads[1:]):
                (drop / f"f{i:05d}.dcm").write_bytes(data)
            intake = Intake(watched.config, drop, settings, uploader, actor="bench")
            start = time.perf_counter()
            summary = intake.run_once()
            watch_rate = (summary.stored + summary.already) / (time.perf_counter() - start)
            uploader.close()
            intake.journal.close()
            assert summary.stored == len(payloads) - 1 and not any(drop.iterdir()), summary
        finally:
            watched.stop()
        value = ratio(watch_rate, direct_rate)
        print(f"corpus: {len(payloads)} CT slices {args.size}x{args.size} (repo {REPO.name})")
        print(rate_line("direct REST upload (reference)", direct_rate))
        print(rate_line("watch folder (archive watch)", watch_rate))
        print(ratio_line("watch / direct", value, target=0.8))
        if args.json:
            emit_json("watch", {"direct_rate": direct_rate, "watch_rate": watch_rate},
                      {"watch_vs_direct": value}, count=len(payloads))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

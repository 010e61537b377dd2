"""Watch-folder throughput vs direct REST upload of the same files (target >= 0.8x).

One run, three fresh archives (so neither answers AlreadyStored), the same CT corpus:
- reference: keep-alive HTTP clients POST each file to /instances, one client, then as
  many clients as the watcher has workers; the better rate is the reference;
- project: the files sit in a drop folder and `Intake.run_once()` ingests them (hash,
  journal, upload, confirmation, audit, deletion).

    .venv/bin/python benchmarks/bench_watch.py [--count 120] [--size 256] [--json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from _common import REPO, emit_json, make_ct_corpus, progress, rate_line, ratio, ratio_line

from archive import db
from archive.access import AccessStore
from archive.intake import Intake, Uploader, load_settings
from archive.vault import Keyring
from archive.vault.keyring import keyring_path
from tests.harness import PASSPHRASE, add_user, new_archive


def _token(archive) -> str:
    add_user(archive, "intake", ["personnel"])
    conn = db.connect(archive.config.home.db_path)
    try:
        return AccessStore(conn).create_token("intake", datetime.now(UTC))[1]
    finally:
        conn.close()


def _direct(work: Path, payloads: list[bytes], clients: int) -> float:
    """Instances/s of a fresh archive fed by `clients` keep-alive REST uploaders."""
    work.mkdir()
    archive = new_archive(work / "home")
    token = _token(archive)
    archive.start()
    try:
        uploader = Uploader(archive.url, token, workers=clients)
        uploader.upload(payloads[0])  # warm-up (counted once, it is stored)
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            for result in pool.map(uploader.upload, payloads[1:]):
                assert result.verdict.confirmed, result
        rate = (len(payloads) - 1) / (time.perf_counter() - start)
        uploader.close()
    finally:
        archive.stop()
    return rate


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
        # References: direct REST upload, one client and as many as the watcher's workers
        # (the better of the two is the figure to match).
        workers = load_settings(new_archive(work / "probe").config).workers
        direct_one = _direct(work / "direct1", payloads, 1)
        progress(f"direct REST, 1 client: {direct_one:.1f}/s")
        direct_many = _direct(work / "directN", payloads, workers)
        progress(f"direct REST, {workers} clients: {direct_many:.1f}/s")
        direct_rate = max(direct_one, direct_many)
        # Project: the watch folder on a fresh archive.
        (work / "watch").mkdir()
        watched = new_archive(work / "watch" / "home")
        token = _token(watched)
        watched.start()
        try:
            settings = load_settings(watched.config)
            stable = settings.stable_seconds
            uploader = Uploader(watched.url, token, workers=settings.workers)
            uploader.upload(payloads[0])  # same warm-up
            drop = work / "drop"
            drop.mkdir()
            # Throughput, not latency: the files landed a while ago (as after a copy made
            # while the watcher was stopped), so none waits out the completeness rule
            # (size and mtime unchanged for `stable_seconds`), a fixed delay per file
            # that is printed below but not counted.
            landed = time.time() - settings.stable_seconds - 1
            for i, data in enumerate(payloads[1:]):
                path = drop / f"f{i:05d}.dcm"
                path.write_bytes(data)
                os.utime(path, (landed, landed))
            keyring = Keyring.open(keyring_path(watched.config.home.keys_dir), PASSPHRASE)
            intake = Intake(
                watched.config, drop, settings, uploader, actor="bench", keyring=keyring
            )
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
        print(rate_line("direct REST upload, 1 client", direct_one))
        print(rate_line(f"direct REST upload, {workers} clients", direct_many))
        print(rate_line("direct REST upload (reference: best)", direct_rate))
        print(rate_line("watch folder (archive watch)", watch_rate))
        print(ratio_line("watch / direct", value, target=0.8))
        print(f"(latency, not counted: a file written just now waits {stable:.1f} s to be "
              "complete, or the settle time after its writer closes it)")  # fmt: skip
        if args.json:
            emit_json("watch", {"direct_rate": direct_rate, "direct_one": direct_one,
                               "direct_many": direct_many, "watch_rate": watch_rate},
                      {"watch_vs_direct": value}, count=len(payloads))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

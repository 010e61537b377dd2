"""The soak of benchmarks/soak.py in short form: under a minute of mixed load after a
restart (web pages with thumbnails, pulls, C-STORE, C-FIND/C-MOVE from a workstation,
REST searches), /teaching/health never takes more than 5 s and every kind of act
succeeds. On the archive of issue 15 the first pull after the restart froze it."""

from __future__ import annotations

from pathlib import Path

from benchmarks.soak import print_result, run_soak


def test_short_soak_no_hang(tmp_path: Path) -> None:
    result = run_soak(40, tmp_path, studies=2, report=lambda message: None)
    print_result(result)
    assert result.hangs == 0, "health stopped answering within 5 s"
    assert not result.dead_workers
    for name, counter in result.counters.items():
        assert counter.ok > 0, f"{name}: nothing succeeded ({counter.errors})"
        assert counter.failed == 0, f"{name}: {counter.errors}"

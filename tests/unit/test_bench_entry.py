"""benchmarks/bench_orthanc.py: Orthanc is started on the benchmark entry, never by a
switch in the production plugin (issue 21)."""

from __future__ import annotations

import importlib.util
import json
import stat
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _wrapper():
    spec = importlib.util.spec_from_file_location(
        "bench_orthanc", REPO / "benchmarks/bench_orthanc.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_wrapper_points_a_private_copy_at_the_benchmark_entry(tmp_path, monkeypatch) -> None:
    wrapper = _wrapper()
    config = tmp_path / "orthanc.json"
    config.write_text(json.dumps({"PythonScript": str(REPO / "plugins/teaching_archive.py")}))
    ran = []
    monkeypatch.setattr(wrapper, "real_orthanc", lambda: "/usr/sbin/Orthanc")
    monkeypatch.setattr(wrapper.os, "execv", lambda binary, argv: ran.append(argv))
    wrapper.main(["--no-jobs", str(config)])
    copy = tmp_path / "orthanc.bench.json"
    assert ran == [["/usr/sbin/Orthanc", "--no-jobs", str(copy)]]
    assert json.loads(copy.read_text())["PythonScript"] == str(REPO / "benchmarks/plugin_entry.py")
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert "teaching_archive" in config.read_text()  # the generated file is left alone


def test_the_production_plugins_read_no_benchmark_switch() -> None:
    for path in sorted((REPO / "plugins").glob("*.py")):
        text = path.read_text()
        assert "ARCHIVE_UNSAFE_DISABLE_HTTP_FILTER" not in text, path.name
        assert "ARCHIVE_BENCH_PASSTHROUGH_STORAGE" not in text, path.name

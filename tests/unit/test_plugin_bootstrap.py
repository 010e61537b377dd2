"""plugins/bootstrap.py and the entry file, with tests/fake_orthanc.py: every adapter is
mandatory (a missing or failing one stops the start), and only the entry file imports
`orthanc`."""

from __future__ import annotations

import ast
import runpy
import sys
import types
from pathlib import Path

import pytest

from plugins import bootstrap
from tests.fake_orthanc import FakeOrthanc
from tests.unit.plugin_fixtures import fake, runtime  # noqa: F401 - fixtures

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
NON_ROUTE = ["storage", "ingest", "http_filter", "catalogue_sync", "web", "health"]


def _configured(runtime) -> FakeOrthanc:  # noqa: F811
    return FakeOrthanc({"TeachingArchive": {"Home": str(runtime.config.home.root)}})


def test_a_missing_adapter_stops_the_start_and_nothing_is_registered(runtime) -> None:  # noqa: F811
    orthanc = _configured(runtime)
    with pytest.raises(bootstrap.PluginStartError, match="no_such_adapter is missing"):
        bootstrap.start(orthanc, [*NON_ROUTE, "no_such_adapter"])
    assert orthanc.storage is None and orthanc.filter is None and orthanc.routes == []
    assert len(orthanc.errors) == 1 and "refusing to start" in orthanc.errors[0]


def test_a_missing_http_filter_stops_the_production_start(
    runtime,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "plugins.http_filter", None)  # as if the file were gone
    orthanc = _configured(runtime)
    with pytest.raises(bootstrap.PluginStartError, match="http_filter"):
        bootstrap.start(orthanc)
    assert orthanc.filter is None and orthanc.storage is None


def test_an_adapter_that_fails_to_register_stops_the_start(
    runtime,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def register(orthanc, services) -> None:
        raise RuntimeError("cannot open its table")

    monkeypatch.setitem(sys.modules, "tests.broken_adapter", types.ModuleType("broken"))
    sys.modules["tests.broken_adapter"].register = register
    orthanc = _configured(runtime)
    with pytest.raises(bootstrap.PluginStartError, match="broken_adapter failed to register"):
        bootstrap.start(orthanc, ["health", "tests.broken_adapter"])


def test_the_non_route_adapters_register_on_the_fake(runtime) -> None:  # noqa: F811
    orthanc = _configured(runtime)
    bootstrap.start(orthanc, NON_ROUTE)
    assert orthanc.storage is not None and orthanc.filter is not None
    assert orthanc.received is not None and orthanc.on_change is not None
    patterns = {p.pattern for p, _ in orthanc.routes}
    assert {r"/teaching/health\Z", r"/teaching/ui(/.*)?\Z"} <= patterns
    assert any("loaded for home" in w for w in orthanc.warnings)


def test_only_the_entry_file_imports_orthanc() -> None:
    importers = []
    for path in sorted(PLUGINS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if "orthanc" in names:
                importers.append(path.name)
    # Route adapters still being converted elsewhere are listed until they take it too.
    converting = {
        "catalogue_routes.py",
        "quarantine_routes.py",
        "governance_routes.py",
        "sharing_routes.py",
        "closure_routes.py",
    }
    assert set(importers) - converting == {"teaching_archive.py"}


def test_the_entry_file_hands_orthanc_to_the_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in = FakeOrthanc()
    started = []
    monkeypatch.setitem(sys.modules, "orthanc", stand_in)
    monkeypatch.setattr(bootstrap, "start", lambda orthanc: started.append(orthanc))
    path = list(sys.path)
    try:
        runpy.run_path(str(PLUGINS / "teaching_archive.py"))
    finally:
        sys.path[:] = path
    assert started == [stand_in]

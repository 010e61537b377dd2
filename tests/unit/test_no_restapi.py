"""The rule of ops/NO-RESTAPI.md, enforced: no orthanc.RestApi* call in plugins/ unless it
is allowlisted here, naming the integration test that proves it cannot deadlock."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins"

# (file, enclosing function, orthanc function) -> "tests/...py::test_name" proving it.
ALLOWED = {
    ("catalogue_sync.py", "_get", "RestApiGet"): (
        "tests/integration/test_no_deadlock.py::test_thumbnails_after_restart_with_ingest_going_on"
    ),
    ("quarantine_routes.py", "store_instance", "RestApiPost"): (
        "tests/integration/test_no_deadlock.py::test_release_and_withdrawal_after_restart_with_ingest"
    ),
    ("withdrawal_routes.py", "_get", "RestApiGet"): (
        "tests/integration/test_no_deadlock.py::test_release_and_withdrawal_after_restart_with_ingest"
    ),
    ("withdrawal_routes.py", "_withdraw", "RestApiDelete"): (
        "tests/integration/test_no_deadlock.py::test_release_and_withdrawal_after_restart_with_ingest"
    ),
}


def restapi_calls(source: str) -> list[tuple[str, str, int]]:
    """(enclosing function, orthanc function, line) of every orthanc.RestApi* use."""
    tree = ast.parse(source)
    found: list[tuple[str, str, int]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = function
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = child.name
            # Any object's RestApi*: plugins take `orthanc` as a parameter and may reach it
            # as services.orthanc, so the name it goes by proves nothing.
            if isinstance(child, ast.Attribute) and child.attr.startswith("RestApi"):
                found.append((function, child.attr, child.lineno))
            visit(child, name)

    visit(tree, "<module>")
    return found


def test_scanner_finds_calls_and_aliases() -> None:
    source = (
        "import orthanc\n"
        "def a():\n    return orthanc.RestApiGet('/x')\n"
        "def b():\n    f = orthanc.RestApiPostAfterPlugins\n    return f('/y', b'')\n"
        "def c(services):\n    return services.orthanc.RestApiDelete('/z')\n"
    )
    assert restapi_calls(source) == [
        ("a", "RestApiGet", 3),
        ("b", "RestApiPostAfterPlugins", 5),
        ("c", "RestApiDelete", 8),
    ]


def test_no_restapi_in_request_paths_unless_proved() -> None:
    unexpected = []
    seen = set()
    for path in sorted(PLUGINS.glob("*.py")):
        for function, call, line in restapi_calls(path.read_text()):
            key = (path.name, function, call)
            seen.add(key)
            if key not in ALLOWED:
                unexpected.append(f"plugins/{path.name}:{line} {function}() calls orthanc.{call}")
    assert not unexpected, (
        "orthanc.RestApi* in a request path can freeze the archive (ops/NO-RESTAPI.md); "
        "read from the vault ledger / send with archive.dicom.send instead, or prove the "
        "call with an integration test and allowlist it:\n" + "\n".join(unexpected)
    )
    stale = sorted(set(ALLOWED) - seen)
    assert not stale, f"allowlisted calls that no longer exist (remove them): {stale}"


def test_every_allowlisted_call_names_a_real_test() -> None:
    for proof in ALLOWED.values():
        file, _, name = proof.partition("::")
        tree = ast.parse((REPO / file).read_text())
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in names, f"{proof} does not exist"

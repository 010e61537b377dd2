"""Orthanc's entry script for BENCHMARK archives only: the production plugin with the
switches a benchmark needs to measure against a reference, which the production entry
(plugins/teaching_archive.py) does not have.

Orthanc loads this instead of the production entry only when started through
benchmarks/bench_orthanc.py (ARCHIVE_ORTHANC=benchmarks/bench_orthanc.py in the
environment of `archive serve`), which rewrites PythonScript in a copy of the generated
configuration. Then, from Orthanc's environment:

  ARCHIVE_BENCH_PASSTHROUGH_STORAGE=1   clear files instead of the encrypted storage area
                                        (benchmarks/passthrough_storage.py);
  ARCHIVE_UNSAFE_DISABLE_HTTP_FILTER=1  an open filter: every request allowed, the
                                        caller's principal still handed to /teaching
                                        routes (benchmarks/open_rest.py).

Each is loud (an error line in Orthanc's log and an audit record) and refused on an
archive reachable from the network. Everything else is the production plugin.
"""

import os
import site
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
_VENV_SITE = _REPO / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
_before = list(sys.path)
site.addsitedir(str(_VENV_SITE / "site-packages"))
_added = [entry for entry in sys.path if entry not in _before]
sys.path[:] = [str(_REPO), *_added, *[e for e in _before if e != str(_REPO)]]

import orthanc  # noqa: E402

from plugins import bootstrap  # noqa: E402

PASSTHROUGH_ENV = "ARCHIVE_BENCH_PASSTHROUGH_STORAGE"
OPEN_REST_ENV = "ARCHIVE_UNSAFE_DISABLE_HTTP_FILTER"


def adapters() -> list[str]:
    chosen = list(bootstrap.ADAPTERS)
    if os.environ.get(PASSTHROUGH_ENV) == "1":
        chosen[chosen.index("storage")] = "benchmarks.passthrough_storage"
    if os.environ.get(OPEN_REST_ENV) == "1":
        chosen[chosen.index("http_filter")] = "benchmarks.open_rest"
    return chosen


bootstrap.start(orthanc, adapters())

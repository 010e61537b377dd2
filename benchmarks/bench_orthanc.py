#!/usr/bin/env python3
"""Start Orthanc with the benchmark entry script instead of the production one.

`archive serve` runs ARCHIVE_ORTHANC (when set) as `BINARY --no-jobs CONFIG.json`. Set
to this file, it copies CONFIG.json beside itself with PythonScript pointing at
benchmarks/plugin_entry.py (mode 0600) and replaces itself (exec, same process id) with
the real Orthanc on that copy. Any other arguments (--version) go to Orthanc as they are.
For benchmarks and the tests that need an open REST API; never for an archive in use.
"""

import json
import os
import shutil
import sys
from pathlib import Path

ENTRY = Path(__file__).resolve().parent / "plugin_entry.py"


def real_orthanc() -> str:
    found = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/bin")
    if not found:
        sys.exit("bench_orthanc: Orthanc is not installed (make setup)")
    return found


def main(argv: list[str]) -> None:
    args = list(argv)
    if args and args[-1].endswith(".json") and Path(args[-1]).is_file():
        source = Path(args[-1])
        config = json.loads(source.read_text())
        config["PythonScript"] = str(ENTRY)
        copy = source.with_name(source.stem + ".bench.json")
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(config, handle, indent=2)
        args[-1] = str(copy)
    binary = real_orthanc()
    os.execv(binary, [binary, *args])  # noqa: S606 - replace this process, same pid


if __name__ == "__main__":
    main(sys.argv[1:])

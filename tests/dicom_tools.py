"""Real DICOM peers for tests: dcmtk's storescu/findscu/movescu/storescp as processes."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.harness import base_env


def storescu(
    port: int, called: str, calling: str, files: Sequence[Path | str], host: str = "127.0.0.1"
) -> subprocess.CompletedProcess:
    """Send files by C-STORE in one association (TCP_NODELAY set, as the archive does)."""
    return subprocess.run(
        ["storescu", "-aec", called, "-aet", calling, host, str(port), *map(str, files)],
        capture_output=True,
        text=True,
        env=base_env(),
        timeout=300,
        check=False,
    )


def write_files(directory: Path, payloads: Sequence[bytes], stem: str = "f") -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, payload in enumerate(payloads):
        path = directory / f"{stem}{index:04d}.dcm"
        path.write_bytes(payload)
        paths.append(path)
    return paths

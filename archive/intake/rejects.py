"""Rejected files and their reasons: a person reads the reason, fixes, drops it again.

A reason file says what happened in words chosen here (never the server's text, never
anything read from the file), so it carries no patient data.
"""

from __future__ import annotations

import errno
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

REASON_SUFFIX = ".reason.txt"


def reason_path(target: Path) -> Path:
    return target.with_name(target.name + REASON_SUFFIX)


def write_reason(target: Path, reason: str, entry_id: int | None = None) -> Path:
    """Write `<target>.reason.txt` (0600) explaining why `target` was not ingested."""
    path = reason_path(target)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = [
        f"not ingested: {reason}",
        f"when: {datetime.now(UTC).isoformat(timespec='seconds')}",
    ]
    if entry_id is not None:
        lines.append(f"intake journal id: {entry_id}")
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def unique_target(rejects_dir: Path, relative: Path) -> Path:
    """Where a rejected file goes: its relative path under the rejects folder, never
    overwriting an earlier reject of the same name."""
    target = rejects_dir / relative
    n = 1
    while target.exists():
        target = target.with_name(f"{relative.stem}.{n}{relative.suffix}")
        n += 1
    return target


def move_to_rejects(
    source: Path, rejects_dir: Path, relative: Path, reason: str, entry_id: int | None = None
) -> Path:
    """Move a rejected file into the rejects folder and write its reason beside it."""
    target = unique_target(rejects_dir, relative)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copy2(source, target)
        os.unlink(source)
    write_reason(target, reason, entry_id)
    return target

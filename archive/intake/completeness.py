"""When is a dropped file complete? After its writer closed it, or once its size and
mtime have stopped changing for a while (copies over SMB/SFTP may not close cleanly).

Pure bookkeeping with an injected clock, so the rules are tested without sleeping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

Signature = tuple[int, int]  # (size, mtime_ns)


def signature(path: Path) -> Signature | None:
    """(size, mtime_ns) of the entry itself: a link is never followed (the watcher
    refuses it when it reads)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


@dataclass
class _Watch:
    sig: Signature | None
    since: float  # when sig was first seen unchanged
    closed: bool = False


class CompletenessTracker:
    """Files seen but not yet handed on; `ready(now)` pops the complete ones.

    `stable_seconds`: how long size+mtime must not change without a close event.
    `settle_seconds`: after a close (or rename into place), how long the file must stay
    unchanged; a writer that reopens to append within it keeps the file waiting.
    """

    def __init__(self, stable_seconds: float = 2.0, settle_seconds: float = 0.2) -> None:
        self.stable_seconds = stable_seconds
        self.settle_seconds = settle_seconds
        self._files: dict[Path, _Watch] = {}

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, path: Path) -> bool:
        return path in self._files

    def seen(self, path: Path, now: float, closed: bool = False) -> None:
        """A created/modified/moved-in (or closed) event, or a scan found the file."""
        sig = signature(path)
        watch = self._files.get(path)
        if watch is None or watch.sig != sig:
            self._files[path] = _Watch(sig, now, closed)
        elif closed:
            watch.closed = True
            watch.since = now

    def forget(self, path: Path) -> None:
        self._files.pop(path, None)

    def ready(self, now: float) -> list[Path]:
        """Complete files (removed from the tracker); vanished files are dropped."""
        out: list[Path] = []
        for path, watch in list(self._files.items()):
            sig = signature(path)
            if sig is None:
                del self._files[path]
                continue
            if sig != watch.sig:
                self._files[path] = _Watch(sig, now, False)
                continue
            wait = self.settle_seconds if watch.closed else self.stable_seconds
            if now - watch.since >= wait:
                del self._files[path]
                out.append(path)
        return sorted(out)

"""A full disk mid-write must not leave the audit log blocked once space is back."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from archive.audit import AuditError, AuditEvent, AuditLog, verify
from archive.audit import log as audit_log


def _event(n: int) -> AuditEvent:
    return AuditEvent(action="test.event", outcome="success", actor="system", detail={"n": n})


def test_partial_write_on_full_disk_is_cut_then_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(tmp_path)
    log.enable_group_commit(interval=60)  # as in the plugin; flushed by hand here
    try:
        log.append(_event(1))
        log.flush()
        before = log.log_path.read_bytes()
        real_write = os.write

        def full_disk(fd: int, data: bytes) -> int:
            real_write(fd, data[: len(data) // 2])  # the disk takes half, then is full
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(audit_log.os, "write", full_disk)
        log.append(_event(2))
        with pytest.raises(AuditError, match="full: free space"):
            log.flush()
        assert log.log_path.read_bytes() == before  # no partial record left behind
        with pytest.raises(AuditError):
            log.append(_event(3))  # fail closed while the disk is full

        monkeypatch.setattr(audit_log.os, "write", real_write)  # space is back
        log.append(_event(4))
        log.flush()
        records = log.log_path.read_bytes().splitlines()
        assert [b'"n":2' in r or b'"n":4' in r for r in records[1:]] == [True, True]
        assert log.last()[0] == 3
    finally:
        log.close()
    assert verify(tmp_path).ok

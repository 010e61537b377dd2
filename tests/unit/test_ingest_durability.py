"""Issue 26: the ingest callback's records commit without their own fsync, and the storage
area's ledger row - a synchronous commit of the same archive.db that Orthanc awaits
before it answers the sender - carries them to the disk.

Checked on the system calls themselves (strace): the records' WAL frames are written
and not fsynced, then the ledger row's commit fsyncs the WAL, before `create` would
return. A WAL fsync covers every frame written before it, whatever connection wrote it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import corpus

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from archive import db
    from archive.core import transaction
    from archive.ingest import flags
    from archive.vault.ledger import InstanceLedger, entry_from_dicom

    path, dicom, durable = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    conn = db.connect(path)
    flags.ensure_schema(conn)
    ledger = InstanceLedger(conn)
    entry = entry_from_dicom("0f1e2d3c-0000-0000-0000-000000000001", open(dicom, "rb").read())
    os.write(2, b"MARK records\\n")
    with transaction(conn, durable=durable):  # as the callback: flags, report, face...
        flags.record_flags(conn, "1.2.3", "1.2.3.4", ["burned-in-text"])
    os.write(2, b"MARK ledger\\n")
    ledger.record(entry)  # as StorageArea.create, autocommit
    os.write(2, b"MARK end\\n")
    level = conn.execute("PRAGMA synchronous").fetchone()[0]
    os.write(2, f"MARK level {level}\\n".encode())
    """
)


def _trace(tmp_path: Path, durable: bool) -> dict[str, list[str]]:
    """The WAL's writes and syncs between the script's marks."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    dicom = tmp_path / "i.dcm"
    dicom.write_bytes(corpus.to_bytes(corpus.make_ct_series(1, rows=16, columns=16)[0]))
    db_path = tmp_path / f"archive-{int(durable)}.db"
    log = tmp_path / f"strace-{int(durable)}.txt"
    subprocess.run(
        ["strace", "-f", "-qq", "-o", str(log), "-e", "trace=openat,write,pwrite64,fsync,fdatasync",
         sys.executable, str(script), str(db_path), str(dicom), "1" if durable else "0"],
        check=True, cwd=Path(__file__).resolve().parents[2], capture_output=True,
    )  # fmt: skip
    wal_fd, part, seen = None, "start", {}
    for line in log.read_text().splitlines():
        mark = re.search(r'write\(2, "MARK ([a-z]+)', line)
        if mark:
            part = mark.group(1)
            continue
        opened = re.search(r'openat\(.*-wal", .*\) = (\d+)', line)
        if opened:
            wal_fd = opened.group(1)
        call = re.search(r"\b(pwrite64|fsync|fdatasync)\((\d+)[,)]", line)
        if call and call.group(2) == wal_fd:
            seen.setdefault(part, []).append(call.group(1))
    level = re.search(r"MARK level (\d)", log.read_text())
    seen["level"] = [level.group(1) if level else "?"]
    return seen


def test_records_wait_for_the_ledger_rows_fsync(tmp_path):
    relaxed = _trace(tmp_path, durable=False)
    assert "pwrite64" in relaxed.get("records", []), relaxed  # the frames are written
    assert not {"fsync", "fdatasync"} & set(relaxed["records"]), relaxed  # not synced
    ledger = relaxed.get("ledger", [])
    assert "pwrite64" in ledger and {"fsync", "fdatasync"} & set(ledger), relaxed
    assert relaxed["level"] == ["2"], "the connection is back to synchronous=FULL"
    # the reference: a durable transaction syncs its own frames
    full = _trace(tmp_path, durable=True)
    assert {"fsync", "fdatasync"} & set(full.get("records", [])), full

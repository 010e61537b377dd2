"""Consistency check of a stopped archive home, with safe repairs only.

Found and what `repair` does about it:
- partial temporary files / rewrap journals left by a crash: removed / rolled forward
  (a temporary file is never the only copy: the rename that publishes it never happened);
- stored files no index entry points to (e.g. written just before a crash, before
  Orthanc committed): MOVED to HOME/data/lost+found/<when>/, still encrypted, never
  deleted - deleting is the operator's later, deliberate act;
- quarantine files with no record: moved likewise;
- index entries with no file, files that fail authentication or whose plaintext differs
  from the MD5 Orthanc recorded, catalogue cases whose study is gone, a damaged database
  or audit log: reported with what to do (restore from a backup); never "repaired".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archive.audit import (
    AuditError,
    AuditEvent,
    audit_log_for,
    pin_public_key,
    read_head,
    read_pin,
    verify_home,
)
from archive.audit.log import LOG_NAME, record_hash
from archive.backup import orthanc_index
from archive.config import ArchiveConfig
from archive.errors import ArchiveError
from archive.fsck.rebuild import UNTIL_PIXEL_DATA, rebuild_until_pixel_data
from archive.vault.dbstore import storage_for
from archive.vault.envelope import JOURNAL_SUFFIX, KeySource, decrypt_stream
from archive.vault.errors import TamperError
from archive.vault.fsutil import TMP_SUFFIX, ensure_private_dir, fsync_dir
from archive.vault.store import EncryptedStore

_STORED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]{3,127})\.(\d{1,10})$")
QUARANTINE_CONTENT = 1
Progress = Callable[[str, int, int], None]


@dataclass
class Finding:
    kind: str  # partial, orphan_file, missing_file, damaged_file, catalogue, database, audit
    target: str
    detail: str
    repairable: bool = False
    repaired: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "detail": self.detail,
            "repairable": self.repairable,
            "repaired": self.repaired,
        }


@dataclass
class FsckReport:
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    lost_and_found: str | None = None

    @property
    def ok(self) -> bool:
        return all(f.repaired for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": dict(self.checked),
            "findings": [f.as_dict() for f in self.findings],
            "lost_and_found": self.lost_and_found,
        }


def lost_and_found_dir(config: ArchiveConfig) -> Path:
    return config.home.data_dir / "lost+found"


class _Md5Sink:
    def __init__(self) -> None:
        self.md5 = hashlib.md5()  # noqa: S324 - Orthanc's checksum, not security

    def write(self, data: Any) -> int:
        self.md5.update(data)
        return len(data)


def _stored(root: Path) -> dict[tuple[str, int], Path]:
    out: dict[tuple[str, int], Path] = {}
    for dirpath, _dirs, files in os.walk(root) if root.is_dir() else ():
        for name in files:
            match = _STORED.match(name)
            if match:
                out[(match.group(1), int(match.group(2)))] = Path(dirpath) / name
    return out


def _partials(root: Path) -> list[Path]:
    found = []
    for dirpath, _dirs, files in os.walk(root) if root.is_dir() else ():
        for name in files:
            if name.startswith(".") and (
                name.endswith(TMP_SUFFIX) or name.endswith(JOURNAL_SUFFIX)
            ):
                found.append(Path(dirpath) / name)
    return found


class _Mover:
    """Moves files into one lost+found folder per run, keeping their relative path."""

    def __init__(self, config: ArchiveConfig) -> None:
        self.root = lost_and_found_dir(config) / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.data_dir = config.home.data_dir
        self.used = False

    def move(self, path: Path, relative: Path | None = None) -> Path:
        target = self.root / (relative or path.relative_to(self.data_dir))
        ensure_private_dir(target.parent)
        os.replace(path, target)
        fsync_dir(target.parent)
        fsync_dir(path.parent)
        self.used = True
        return target

    def move_row(self, store: Any, uuid: str, content_type: int) -> Path:
        """A row of the database store: its envelope (still encrypted) written here,
        fsynced, then the row deleted."""
        target = self.root / "storage" / f"{uuid}.{content_type}"
        ensure_private_dir(target.parent)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, store.envelope(uuid, content_type))
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(target.parent)
        store.remove(uuid, content_type)
        self.used = True
        return target


class _SqliteIndex:
    """A consistent copy of Orthanc's SQLite index, asked the same questions."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def attachments(self) -> list[orthanc_index.Attachment]:
        return orthanc_index.attachments(self.conn)

    def instances_per_study(self) -> dict[str, int]:
        return orthanc_index.instances_per_study(self.conn)

    def instances_without_file(self) -> list[str]:
        return orthanc_index.instances_without_file(self.conn)

    def close(self) -> None:
        self.conn.close()


def _label(path: Path, home_data: Path, store_root: Path | None) -> tuple[str, Path]:
    """How a stored file is named in findings and under lost+found."""
    try:
        rel = path.relative_to(home_data)
    except ValueError:  # [storage] kind = "path": outside the home
        rel = Path("storage") / path.relative_to(store_root) if store_root else Path(path.name)
    return str(rel), rel


def _integrity(conn: sqlite3.Connection) -> str:
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        return str(exc)


def _table_exists(conn: Any, name: str) -> bool:
    if isinstance(conn, sqlite3.Connection):
        row = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,))
        return row.fetchone() is not None
    return bool(_rows(conn, "SELECT to_regclass(:name) IS NOT NULL", name=name)[0][0])


def _rows(conn: Any, sql: str, **params: Any) -> list[Any]:
    """Rows of a plain query on SQLite (sqlite3) or on the archive's PostgreSQL tables."""
    if isinstance(conn, sqlite3.Connection):
        return conn.execute(sql, params).fetchall()
    from sqlalchemy import text  # noqa: PLC0415

    return conn.execute(text(sql), params or None).fetchall()


def check_home(
    config: ArchiveConfig,
    keyring: KeySource,
    *,
    repair: bool = False,
    progress: Progress = lambda _p, _d, _t: None,
) -> FsckReport:
    """Check a STOPPED home (the caller holds the serve lock; on PostgreSQL, every node
    of the archive must be stopped too); repair only what is safe. Orthanc's index, the
    archive's tables, the storage and the audit chain are read where archive.toml says
    (SQLite and files in the home, or PostgreSQL and the shared storage)."""
    home = config.home
    report = FsckReport()
    mover = _Mover(config)
    store = storage_for(config, keyring)
    store_root: Path | None = store.root

    # 1. Leftovers of interrupted writes (files only: a row is committed or absent).
    for root in [r for r in (store_root, home.quarantine_dir) if r is not None]:
        partials = _partials(root)
        for path in partials:
            report.findings.append(
                Finding(
                    "partial",
                    _label(path, home.data_dir, store_root)[0],
                    "temporary file or rewrap journal left by an interrupted write",
                    repairable=True,
                )
            )
        if repair and partials:
            cleanup = EncryptedStore(root, keyring).cleanup_partials()
            done = {
                _label(p, home.data_dir, store_root)[0]
                for p in cleanup.removed_partials + cleanup.journals_applied
            }
            for finding in report.findings:
                if finding.kind == "partial" and finding.target in done:
                    finding.repaired = True

    # 2. Orthanc's index against the storage area.
    index: orthanc_index.PgIndex | _SqliteIndex | None
    if config.database.shared:
        index = orthanc_index.PgIndex(config)
        if not index.present():
            index.close()
            index = None
            report.findings.append(
                Finding("database", "index", "no Orthanc index in the database yet")
            )
    else:
        try:
            index = _SqliteIndex(orthanc_index.copy_index(home.index_dir, ":memory:"))
        except ArchiveError as exc:
            if orthanc_index.index_file(home.index_dir).exists():
                raise
            index = None
            report.findings.append(Finding("database", "index", str(exc)))
    if store_root is not None:
        stored: dict[tuple[str, int], Path | None] = dict(_stored(store_root))
    else:
        stored = {(uuid, ct): None for uuid, ct, _ in store.entries()}
    if index is not None:
        if isinstance(index, _SqliteIndex):
            state = _integrity(index.conn)
            if state != "ok":
                report.findings.append(
                    Finding("database", "index", f"Orthanc's index: {state}; restore from a backup")
                )
        attachments = index.attachments()
        report.checked["attachments"] = len(attachments)
        dicom = orthanc_index.DICOM_CONTENT
        dicom_of = {a.resource: a for a in attachments if a.content_type == dicom}
        rebuildable: list[tuple[Finding, orthanc_index.Attachment]] = []
        known = set()

        def lost(kind: str, att: orthanc_index.Attachment, label: str, detail: str) -> None:
            derived = att.content_type == UNTIL_PIXEL_DATA and att.resource in dicom_of
            if derived:  # written without fsync by design: rebuilt from the DICOM file
                detail = "'DICOM until pixel data' copy lost (power cut?); rebuildable"
            finding = Finding(kind, label, detail, repairable=derived)
            report.findings.append(finding)
            if derived:
                rebuildable.append((finding, att))

        for done, att in enumerate(attachments, start=1):
            key = (att.uuid, att.content_type)
            known.add(key)
            label = f"{att.uuid}.{att.content_type}"
            if key not in stored:
                why = f"instance {att.resource} has no stored file; restore it from a backup"
                lost("missing_file", att, label, why)
                continue
            path = stored[key]
            sink = _Md5Sink()
            try:
                if path is not None:
                    with open(path, "rb") as src:
                        decrypt_stream(keyring, att.uuid, att.content_type, src, sink)
                else:
                    sink.write(store.read(att.uuid, att.content_type))
            except TamperError as exc:
                lost("damaged_file", att, label, f"fails authentication ({exc.reason})")
                continue
            if att.md5 and sink.md5.hexdigest() != att.md5:
                lost("damaged_file", att, label, "plaintext differs from Orthanc's MD5")
            if done == len(attachments) or done % 200 == 0:
                progress("storage", done, len(attachments))
        if repair and rebuildable:
            for finding, att in rebuildable:
                refusal = rebuild_until_pixel_data(store, att, dicom_of[att.resource])
                if refusal is None:
                    finding.repaired = True
                else:
                    finding.detail += f"; not rebuilt: {refusal}"
        for key, path in sorted(stored.items()):
            if key not in known:
                if path is not None:
                    label, relative = _label(path, home.data_dir, store_root)
                else:
                    label, relative = f"{key[0]}.{key[1]} (database storage)", None
                finding = Finding(
                    "orphan_file",
                    label,
                    "stored file no index entry points to (e.g. written just before a crash)",
                    repairable=True,
                )
                if repair:
                    if path is not None:
                        mover.move(path, relative)
                    else:
                        mover.move_row(store, *key)
                    finding.repaired = True
                report.findings.append(finding)
        for public_id in index.instances_without_file():
            report.findings.append(
                Finding("missing_file", public_id, "instance has no DICOM attachment in the index")
            )
        studies = index.instances_per_study()
        index.close()
    else:
        studies = {}
    if hasattr(store, "close"):
        store.close()

    # 3. The archive's database: catalogue cases and quarantine records.
    if config.database.shared:
        from archive import db  # noqa: PLC0415

        conn: Any = db.open_database(config)
        try:
            _check_catalogue(conn, studies, index is not None, report)
            _check_quarantine(conn, config, keyring, repair, mover, report)
        finally:
            conn.close()
    elif home.db_path.is_file():
        conn = sqlite3.connect(str(home.db_path), timeout=30)
        try:
            state = _integrity(conn)
            if state != "ok":
                report.findings.append(
                    Finding("database", "archive.db", f"{state}; restore from a backup")
                )
            _check_catalogue(conn, studies, index is not None, report)
            _check_quarantine(conn, config, keyring, repair, mover, report)
        finally:
            conn.close()

    # 4. The audit log.
    _check_audit(config, repair, report, keyring)
    if mover.used:
        report.lost_and_found = str(mover.root)
    return report


def audit_head_lag(audit_dir: Path) -> tuple[int, int] | None:
    """(head seq, last seq) when records past the head file chain correctly onto it: a
    kill between the log's fsync and the head's rename (crash mid-append), not an edit."""
    head = read_head(audit_dir)
    if head is None:
        return None
    seq, prev, last = head.seq, head.hash, head.seq
    try:
        lines = (audit_dir / LOG_NAME).read_bytes().splitlines()
    except OSError:
        return None
    if len(lines) <= head.seq:
        return None
    if head.seq:
        try:
            at_head = json.loads(lines[head.seq - 1])
        except ValueError:  # a damaged line: reported by verify, not a lagging head
            return None
        if at_head.get("seq") != head.seq or at_head.get("hash") != head.hash:
            return None
    for raw in lines[head.seq :]:
        try:
            record = json.loads(raw)
        except ValueError:
            return None
        if record.get("seq") != seq + 1 or record.get("prev") != prev:
            return None
        if record.get("hash") != record_hash(record):
            return None
        seq, prev, last = record["seq"], record["hash"], record["seq"]
    return head.seq, last


def _check_audit(
    config: ArchiveConfig, repair: bool, report: FsckReport, keyring: KeySource | None = None
) -> None:
    """The audit log against the pinned key and the database anchor (audit/FORMAT.md 5)."""
    directory = config.home.audit_dir
    raw = getattr(keyring, "audit_public_key_bytes", None)
    signer = getattr(keyring, "audit_signing_key", None)
    try:
        if isinstance(raw, bytes) and not read_pin(config.home.keys_dir):
            pin_public_key(config.home.keys_dir, raw)  # from the keyring fsck opened
        audit = verify_home(config.home)
    except AuditError as exc:
        report.findings.append(Finding("audit", "audit.jsonl", str(exc)))
        return
    report.checked["audit_records"] = audit.records
    lag = audit_head_lag(directory) if audit.problems else None
    rest = [p for p in audit.problems if not (lag and "not confirmed by the head" in p)]
    if lag and rest:  # only a head lagging behind an otherwise sound log is a crash
        lag = None
        rest = list(audit.problems)
    if lag:
        finding = Finding(
            "audit_head",
            "head.json",
            f"head file stops at seq {lag[0]}, the intact chain at {lag[1]}: a crash between "
            f"writing records and updating the head",
            repairable=True,
        )
        if repair:
            audit_log_for(config.home, signer=signer).append(
                AuditEvent(
                    "audit.head_recovered",
                    "success",
                    actor="fsck",
                    source="cli",
                    detail={"head_seq": lag[0], "chain_seq": lag[1]},
                )
            )
            finding.repaired = verify_home(config.home).ok
        report.findings.append(finding)
    for problem in rest:
        report.findings.append(Finding("audit", "audit.jsonl", problem))


def _check_catalogue(
    conn: Any, studies: dict[str, int], have_index: bool, report: FsckReport
) -> None:
    if not have_index or not _table_exists(conn, "catalogue_cases"):
        return
    rows = _rows(
        conn, "SELECT case_id, orthanc_study_id, instance_count, status FROM catalogue_cases"
    )
    report.checked["cases"] = len(rows)
    for case_id, study, count, status in rows:
        if status == "withdrawn":
            continue
        if study not in studies:
            report.findings.append(
                Finding("catalogue", case_id, "its study is not in Orthanc's index")
            )
        elif studies[study] < int(count):
            report.findings.append(
                Finding(
                    "catalogue",
                    case_id,
                    f"catalogue lists {count} instances, Orthanc's index has {studies[study]}",
                )
            )


def _check_quarantine(
    conn: Any,
    config: ArchiveConfig,
    keyring: KeySource,
    repair: bool,
    mover: _Mover,
    report: FsckReport,
) -> None:
    root = config.home.quarantine_dir
    files = _stored(root)
    ids: set[str] = set()
    if _table_exists(conn, "quarantine_items"):
        ids = {r[0] for r in _rows(conn, "SELECT id FROM quarantine_items")}
    report.checked["quarantine_items"] = len(ids)
    for item in sorted(ids):
        path = files.get((item, QUARANTINE_CONTENT))
        if path is None:
            report.findings.append(
                Finding("missing_file", item, "quarantine record without its encrypted file")
            )
            continue
        try:
            with open(path, "rb") as src:
                decrypt_stream(keyring, item, QUARANTINE_CONTENT, src, _Md5Sink())
        except TamperError as exc:
            report.findings.append(Finding("damaged_file", item, f"fails authentication ({exc})"))
    for (uuid, ct), path in sorted(files.items()):
        if uuid not in ids or ct != QUARANTINE_CONTENT:
            finding = Finding(
                "orphan_file",
                str(path.relative_to(config.home.data_dir)),
                "quarantine file without a record (e.g. written just before a crash)",
                repairable=True,
            )
            if repair:
                mover.move(path)
                finding.repaired = True
            report.findings.append(finding)

"""Bring an archive back in a new home from a data backup plus a keyring backup.

The keyring backup (sealed under the recovery passphrase) is restored first under a new
keyring passphrase; its keys open the bundle; the ciphertext objects are copied as they
are. Then every stored file is read back: it must authenticate and its plaintext MD5 must
equal the one Orthanc's restored index recorded at ingest, so the restored archive serves
byte-identical instances. A failed restore removes the home it was creating.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archive.audit import AuditEvent, audit_log_for
from archive.backup import orthanc_index
from archive.backup.registry import record_backup_location
from archive.backup.snapshot import (
    AREAS,
    area_dir,
    object_path,
    open_bundle,
    read_info,
    read_manifest,
    resolve,
    stored_path,
)
from archive.config import load_config
from archive.errors import ArchiveError
from archive.serve import orthanc_config
from archive.serve.home import init_home
from archive.vault import Keyring, keyring_path, restore_keyring
from archive.vault.errors import TamperError
from archive.vault.fsutil import atomic_write, ensure_private_dir
from archive.vault.sealing import KdfParams

Progress = Callable[[str, int, int], None]


@dataclass
class RestoreResult:
    home: Path
    backup_id: str
    files: int
    instances_checked: int
    audit_last_seq: int
    http_port: int
    dicom_port: int
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "backup_id": self.backup_id,
            "files": self.files,
            "instances_checked": self.instances_checked,
            "audit_last_seq": self.audit_last_seq,
            "http_port": self.http_port,
            "dicom_port": self.dicom_port,
            "problems": list(self.problems),
        }


def _set_ports(text: str, http_port: int | None, dicom_port: int | None) -> str:
    """Rewrite `port = N` in [http] and [dicom] of archive.toml, keeping its comments."""
    out, section = [], ""
    for line in text.splitlines(keepends=True):
        head = re.match(r"^\s*\[([A-Za-z0-9_]+)\]\s*$", line)
        if head:
            section = head.group(1)
        new = {"http": http_port, "dicom": dicom_port}.get(section)
        if new is not None and re.match(r"^\s*port\s*=", line):
            line = f"port = {int(new)}\n"
        out.append(line)
    return "".join(out)


def _set_policies_dir(text: str, directory: Path) -> str:
    return re.sub(
        r"(?m)^policies_dir\s*=.*$", f"policies_dir = {json.dumps(str(directory))}", text, count=1
    )


def _set_database(text: str, database: str) -> str:
    """[database] database = NAME (it wins over the dsn, see archive/config.py)."""
    import tomllib

    import tomli_w

    raw = tomllib.loads(text)
    raw.setdefault("database", {})["database"] = database
    return tomli_w.dumps(raw)


def _ports_of(text: str) -> tuple[int, int]:
    import tomllib

    raw = tomllib.loads(text)
    return int(raw.get("http", {}).get("port", 8042)), int(raw.get("dicom", {}).get("port", 4242))


def restore_backup(
    backup: Path,
    keyring_backup: Path,
    recovery_passphrase: str,
    new_home: Path,
    new_passphrase: str,
    *,
    backup_id: str | None = None,
    http_port: int | None = None,
    dicom_port: int | None = None,
    actor: str = "local-operator",
    kdf: KdfParams | None = None,
    progress: Progress = lambda _p, _d, _t: None,
    database: str | None = None,
) -> RestoreResult:
    """Restore into `new_home`, which must not exist yet or be empty. A backup of an
    archive on PostgreSQL is loaded into an EMPTY database: `database` (else the one
    its archive.toml names), on the server its archive.toml names (FORMAT.md)."""
    dest, backup_id = resolve(backup, backup_id)
    info = read_info(dest, backup_id)
    manifest, raw = read_manifest(dest, backup_id)
    if hashlib.sha256(raw).hexdigest() != info.get("manifest_sha256"):
        raise ArchiveError(f"Backup {backup_id}: manifest.json does not match info.json.")
    new_home = Path(new_home).expanduser().resolve()
    if new_home.exists() and (not new_home.is_dir() or any(new_home.iterdir())):
        raise ArchiveError(f"{new_home} is not empty; restore into a new or empty directory.")
    created = not new_home.exists()
    try:
        return _restore(
            dest, backup_id, info, manifest, keyring_backup, recovery_passphrase,
            new_home, new_passphrase, http_port, dicom_port, actor, kdf, progress, database,
        )  # fmt: skip
    except BaseException:
        if created:
            shutil.rmtree(new_home, ignore_errors=True)
        else:
            for child in list(new_home.iterdir()):
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
        raise


def _restore(
    dest: Path,
    backup_id: str,
    info: dict[str, Any],
    manifest: dict[str, Any],
    keyring_backup: Path,
    recovery_passphrase: str,
    new_home: Path,
    new_passphrase: str,
    http_port: int | None,
    dicom_port: int | None,
    actor: str,
    kdf: KdfParams | None,
    progress: Progress,
    database: str | None = None,
) -> RestoreResult:
    config = init_home(new_home, http_port=http_port or 8042, dicom_port=dicom_port or 4242)
    home = config.home
    ring = restore_keyring(
        keyring_backup, recovery_passphrase, keyring_path(home.keys_dir), new_passphrase, kdf=kdf
    )
    kek = str(info.get("bundle_kek_id", ""))
    if kek and not ring.knows(kek):
        raise ArchiveError(
            f"The keyring backup does not hold key {kek} that backup {backup_id} was made "
            f"with; use a keyring backup made after that key was created."
        )
    members = open_bundle(dest, backup_id, ring)
    meta = json.loads(members["meta.json"])
    if meta.get("manifest_sha256") != info.get("manifest_sha256"):
        raise ArchiveError(f"Backup {backup_id}: its manifest is not the one sealed in it.")

    # Configuration: the backup's archive.toml, on the requested (or original) ports.
    text = members["config/archive.toml"].decode("utf-8")
    old_http, old_dicom = _ports_of(text)
    text = _set_ports(text, http_port or old_http, dicom_port or old_dicom)
    policies = {k: v for k, v in members.items() if k.startswith("policies/")}
    if meta.get("custom_policies_dir") and policies:
        target = home.root / "policies"
        for name, data in policies.items():
            path = home.root / name
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_bytes(data)
        text = _set_policies_dir(text, target)
    on_postgres = meta.get("database") == "postgresql"
    if on_postgres and database:
        text = _set_database(text, database)
    atomic_write(home.config_file, text.encode("utf-8"), mode=0o600)
    config = load_config(home.root)
    orthanc_config.write(config, orthanc_config.render(config))

    # Databases and the audit log.
    if on_postgres:
        from archive.backup import pgdump  # noqa: PLC0415

        if not pgdump.is_empty(config):
            raise ArchiveError(
                f"PostgreSQL database {config.database.database} is not empty (it holds "
                "Orthanc's tables or the archive's schema): a restore never writes over a "
                f"database. Create an empty one (createdb -O {config.database.user} NAME) "
                "and give it with --database NAME."
            )
        pgdump.restore(config, members[pgdump.DUMP_NAME])
    else:
        atomic_write(orthanc_index.index_file(home.index_dir), members["index.sqlite"])
        if "archive.db" in members:
            atomic_write(home.db_path, members["archive.db"])
    for name, data in members.items():
        if name.startswith("audit/"):
            atomic_write(home.audit_dir / name.split("/", 1)[1], data)

    # Stored files, copied as ciphertext and checked against the manifest's hash.
    files = manifest.get("files", [])
    for done, entry in enumerate(files, start=1):
        if entry["area"] not in AREAS:
            raise ArchiveError(f"Backup {backup_id}: unknown storage area {entry['area']!r}.")
        data = object_path(dest, entry["sha256"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ArchiveError(
                f"Backup {backup_id}: object for {entry['area']}/{entry['name']} is damaged; "
                f"run archive backup verify."
            )
        target = stored_path(area_dir(config, entry["area"]), entry["name"])
        ensure_private_dir(target.parent)
        atomic_write(target, data, sync=False)
        if done == len(files) or done % 200 == 0:
            progress("files", done, len(files))
    for area in AREAS:  # one sync per directory tree instead of one per file
        _sync_tree(area_dir(config, area))

    checked, problems = read_back(config, ring, progress)
    if problems:
        raise ArchiveError(
            f"Restored files failed the read-back check ({len(problems)}): {problems[0]}"
        )
    record_backup_location(home.keys_dir, dest, note=f"restored from {backup_id}")
    audit_log_for(home).append(
        AuditEvent(
            action="backup.restore",
            outcome="success",
            actor=actor,
            source="cli",
            target=backup_id,
            detail={"files": len(files), "instances_checked": checked},
        )
    )
    return RestoreResult(
        home=home.root,
        backup_id=backup_id,
        files=len(files),
        instances_checked=checked,
        audit_last_seq=int(meta.get("audit_last_seq", 0)),
        http_port=config.http.port,
        dicom_port=config.dicom.port,
    )


def _sync_tree(root: Path) -> None:
    import os

    for dirpath, _dirs, _files in os.walk(root):
        fd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Md5Sink:
    def __init__(self) -> None:
        self.md5 = hashlib.md5()  # noqa: S324 - Orthanc's own checksum, not security

    def write(self, data: Any) -> int:
        self.md5.update(data)
        return len(data)


def read_back(config, keyring: Keyring, progress: Progress) -> tuple[int, list[str]]:
    """Decrypt every attachment Orthanc's index lists and compare its plaintext MD5 with
    the index's; (attachments checked, problems)."""
    from archive.vault.dbstore import storage_for  # noqa: PLC0415

    if config.database.shared:
        index = orthanc_index.PgIndex(config)
        try:
            attachments = index.attachments()
        finally:
            index.close()
    else:
        conn = orthanc_index.copy_index(config.home.index_dir, ":memory:")
        try:
            attachments = orthanc_index.attachments(conn)
        finally:
            conn.close()
    store = storage_for(config, keyring)
    problems: list[str] = []
    for done, att in enumerate(attachments, start=1):
        sink = _Md5Sink()
        try:
            store.read_stream(att.uuid, att.content_type, sink)
        except FileNotFoundError:
            problems.append(f"attachment {att.uuid}.{att.content_type} is missing")
            continue
        except TamperError as exc:
            problems.append(f"attachment {att.uuid}.{att.content_type} does not decrypt: {exc}")
            continue
        if att.md5 and sink.md5.hexdigest() != att.md5:
            problems.append(f"attachment {att.uuid}.{att.content_type} differs from the index MD5")
        if done == len(attachments) or done % 200 == 0:
            progress("read-back", done, len(attachments))
    if hasattr(store, "close"):
        store.close()
    return len(attachments), problems

"""Encrypted, incremental backups of an archive home (format in FORMAT.md next to this).

A backup destination holds content-addressed ciphertext objects shared by all its
snapshots, plus one directory per snapshot:

    DEST/backup-store.json          marks the directory as a backup destination
    DEST/objects/ab/<sha256>        stored files copied AS CIPHERTEXT (never decrypted)
    DEST/snapshots/<id>/manifest.json   which object is which stored file (clear: only
                                    Orthanc's random attachment uuids, sizes, hashes)
    DEST/snapshots/<id>/bundle.tav  envelope-encrypted tar: Orthanc's index, archive.db,
                                    the audit log, archive.toml, policies, meta.json
    DEST/snapshots/<id>/info.json   clear summary for `list` (counts, hashes, key id)

Keys are never written here: the bundle is wrapped under the keyring's primary KEK and
the keyring backup (archive keys backup) is kept apart. Stored files never change once
written except for a header rewrap at key rotation, so a file whose path, size and mtime
match the previous snapshot's record keeps its hash and object; anything else is hashed
while copied. Snapshots appear atomically (written under a hidden name, renamed last).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archive.audit import AuditEvent, audit_log_for
from archive.audit.log import HEAD_NAME, LOCK_NAME, LOG_NAME, PUBLIC_KEY_NAME
from archive.backup import orthanc_index
from archive.backup.registry import record_backup_location
from archive.config import ArchiveConfig
from archive.errors import ArchiveError
from archive.paths import POLICIES_DIR
from archive.vault.envelope import KeySource, decrypt_stream, encrypt_stream, read_header
from archive.vault.errors import TamperError
from archive.vault.fsutil import ensure_private_dir, fsync_dir

STORE_MARKER = "backup-store.json"
FORMAT_NAME = "teaching-archive-backup"
FORMAT_VERSION = 1
BUNDLE_NAME = "bundle.tav"
BUNDLE_CONTENT_TYPE = 0  # envelope AAD: uuid "backup-<id>", content type 0
MANIFEST_NAME = "manifest.json"
INFO_NAME = "info.json"
AREAS = ("storage", "quarantine")
_CHUNK = 1 << 20
_STORED = __import__("re").compile(r"^[A-Za-z0-9][A-Za-z0-9-]{3,127}\.\d{1,10}$")

Progress = Callable[[str, int, int], None]


def _no_progress(_phase: str, _done: int, _total: int) -> None:
    return None


@dataclass
class BackupResult:
    id: str
    path: Path
    files: int
    bytes: int
    new_files: int
    new_bytes: int
    audit_last_seq: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": str(self.path),
            "files": self.files,
            "bytes": self.bytes,
            "new_files": self.new_files,
            "new_bytes": self.new_bytes,
            "audit_last_seq": self.audit_last_seq,
        }


@dataclass
class VerifyResult:
    id: str
    ok: bool
    files_checked: int = 0
    decrypted: int = 0
    bundle_checked: bool = False
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ok": self.ok,
            "files_checked": self.files_checked,
            "files_decrypted": self.decrypted,
            "bundle_checked": self.bundle_checked,
            "problems": list(self.problems),
        }


# -- helpers ---------------------------------------------------------------------------
def bundle_uuid(backup_id: str) -> str:
    return f"backup-{backup_id}"


def area_dir(config: ArchiveConfig, area: str) -> Path:
    """Where an area's files are: the storage's follow [storage] (with kind =
    "postgresql" there are none: the envelopes are rows, inside postgres.dump)."""
    if area == "storage" and config.storage.kind == "path":
        return Path(config.storage.path)
    return {"storage": config.home.storage_dir, "quarantine": config.home.quarantine_dir}[area]


def stored_path(root: Path, name: str) -> Path:
    return root / name[0:2] / name[2:4] / name


def object_path(dest: Path, digest: str) -> Path:
    return dest / "objects" / digest[:2] / digest


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, payload: dict[str, Any]) -> bytes:
    body = (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode("utf-8")
    with open(path, "xb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    return body


def _stored_files(root: Path) -> Iterator[Path]:
    """Every finished stored file under an EncryptedStore root (no temporaries)."""
    if not root.is_dir():
        return
    for first in sorted(root.iterdir()):
        if not first.is_dir() or len(first.name) != 2:
            continue
        for second in sorted(first.iterdir()):
            if not second.is_dir():
                continue
            for entry in sorted(second.iterdir()):
                if _STORED.match(entry.name) and entry.is_file():
                    yield entry


def _new_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def open_destination(dest: Path, *, create: bool) -> Path:
    dest = Path(dest).expanduser().resolve()
    marker = dest / STORE_MARKER
    if marker.is_file():
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError:
            raise ArchiveError(f"{marker} is damaged; is {dest} a backup destination?") from None
        if data.get("format") != FORMAT_NAME or data.get("version") != FORMAT_VERSION:
            raise ArchiveError(f"{dest} holds backups of another format; use another folder.")
        return dest
    if not create:
        raise ArchiveError(f"{dest} is not a backup destination (no {STORE_MARKER}).")
    if dest.exists() and any(dest.iterdir()):
        raise ArchiveError(f"{dest} is not empty and not a backup destination; pick another.")
    ensure_private_dir(dest)
    for sub in ("objects", "snapshots"):
        ensure_private_dir(dest / sub)
    _write_json(marker, {"format": FORMAT_NAME, "version": FORMAT_VERSION})
    fsync_dir(dest)
    return dest


class _DestLock:
    """One writer per destination (two concurrent backups would race on objects)."""

    def __init__(self, dest: Path) -> None:
        self.path = dest / ".lock"

    def __enter__(self) -> _DestLock:
        self.fh = open(self.path, "a+")  # noqa: SIM115 - held for the with-block
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise ArchiveError(
                f"Another backup is writing to {self.path.parent}; wait for it to finish."
            ) from None
        return self

    def __exit__(self, *_exc: object) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def snapshot_ids(dest: Path) -> list[str]:
    root = dest / "snapshots"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_info(dest: Path, backup_id: str) -> dict[str, Any]:
    path = dest / "snapshots" / backup_id / INFO_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArchiveError(f"No backup {backup_id} in {dest}; see archive backup list.") from None
    except ValueError:
        raise ArchiveError(f"{path} is damaged; verify the backup.") from None


def read_manifest(dest: Path, backup_id: str) -> tuple[dict[str, Any], bytes]:
    path = dest / "snapshots" / backup_id / MANIFEST_NAME
    try:
        raw = path.read_bytes()
        return json.loads(raw), raw
    except FileNotFoundError:
        raise ArchiveError(f"Backup {backup_id} has no manifest; it is incomplete.") from None
    except ValueError:
        raise ArchiveError(f"The manifest of backup {backup_id} is damaged.") from None


def resolve(backup: Path, backup_id: str | None = None) -> tuple[Path, str]:
    """Accept DEST (latest or --id) or DEST/snapshots/<id>; return (dest, id)."""
    backup = Path(backup).expanduser().resolve()
    if (backup / INFO_NAME).is_file() and backup.parent.name == "snapshots":
        return open_destination(backup.parent.parent, create=False), backup.name
    dest = open_destination(backup, create=False)
    ids = snapshot_ids(dest)
    if backup_id is None:
        if not ids:
            raise ArchiveError(f"{dest} holds no finished backup.")
        return dest, ids[-1]
    if backup_id not in ids:
        raise ArchiveError(f"No backup {backup_id} in {dest}; see archive backup list.")
    return dest, backup_id


# -- create ----------------------------------------------------------------------------
def _copy_object(src: Path, dest: Path, tmp_dir: Path) -> tuple[str, bool]:
    """Copy `src` into the object store, hashing as it goes; (sha256, newly written)."""
    digest = hashlib.sha256()
    tmp = tmp_dir / f".obj-{secrets.token_hex(8)}.tmp"
    try:
        with open(src, "rb") as fin, open(tmp, "xb") as fout:
            while block := fin.read(_CHUNK):
                digest.update(block)
                fout.write(block)
            fout.flush()
            os.fsync(fout.fileno())
        target = object_path(dest, digest.hexdigest())
        if target.is_file():
            tmp.unlink()
            return digest.hexdigest(), False
        target.parent.mkdir(mode=0o700, exist_ok=True)
        os.replace(tmp, target)
        fsync_dir(target.parent)
        return digest.hexdigest(), True
    finally:
        tmp.unlink(missing_ok=True)


def _previous_files(dest: Path) -> dict[tuple[str, str], dict[str, Any]]:
    ids = snapshot_ids(dest)
    if not ids:
        return {}
    try:
        manifest, _ = read_manifest(dest, ids[-1])
    except ArchiveError:
        return {}
    return {(f["area"], f["name"]): f for f in manifest.get("files", [])}


def _sqlite_copy(source: Path, target: Path) -> None:
    src = sqlite3.connect(str(source), timeout=30)
    try:
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal
        finally:
            dst.close()
    finally:
        src.close()


def _copy_audit(audit_dir: Path, target: Path) -> int:
    """Copy the audit log under its writers' lock: a record is either in or out."""
    ensure_private_dir(target)
    lock = open(audit_dir / LOCK_NAME, "a+")  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in (LOG_NAME, HEAD_NAME, PUBLIC_KEY_NAME):
            if (audit_dir / name).is_file():
                shutil.copy2(audit_dir / name, target / name)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    head = target / HEAD_NAME
    return int(json.loads(head.read_text())["seq"]) if head.is_file() else 0


def _chain_seq(config: ArchiveConfig) -> int:
    """The last seq of the audit chain in PostgreSQL (audit/FORMAT.md section 8)."""
    from archive.audit import home_chain  # noqa: PLC0415

    chain = home_chain(config.home)
    head = chain.read().head if chain is not None else None
    return head.seq if head is not None else 0


def _policies_dir(config: ArchiveConfig) -> Path:
    return Path(config.policies_dir)


def create_backup(
    config: ArchiveConfig,
    keyring: KeySource,
    dest: Path,
    *,
    actor: str = "local-operator",
    progress: Progress = _no_progress,
) -> BackupResult:
    """Write one snapshot of a STOPPED home (the caller holds the serve lock; on
    PostgreSQL every node must be stopped) to `dest` (FORMAT.md)."""
    home = config.home
    dest = open_destination(dest, create=True)
    record_backup_location(home.keys_dir, dest, note="archive backup create")
    with _DestLock(dest):
        backup_id = _new_id()
        partial = dest / "snapshots" / f".partial-{backup_id}"
        staging = home.tmp_dir / f".backup-staging-{backup_id}"
        ensure_private_dir(partial)
        ensure_private_dir(staging)
        try:
            result = _create(config, keyring, dest, backup_id, partial, staging, progress)
            final = dest / "snapshots" / backup_id
            os.replace(partial, final)
            fsync_dir(final.parent)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        result.path = final
    audit_log_for(home).append(
        AuditEvent(
            action="backup.create",
            outcome="success",
            actor=actor,
            source="cli",
            target=backup_id,
            detail={
                "files": result.files,
                "new_files": result.new_files,
                "audit_last_seq": result.audit_last_seq,
            },
        )
    )
    return result


def _create(
    config: ArchiveConfig,
    keyring: KeySource,
    dest: Path,
    backup_id: str,
    partial: Path,
    staging: Path,
    progress: Progress,
) -> BackupResult:
    home = config.home
    # 1. The databases and the audit log, as of now (the archive is stopped).
    progress("databases", 0, 3)
    content = staging / "content"
    ensure_private_dir(content)
    if config.database.shared:  # Orthanc's index, the archive's tables, the audit chain
        from archive.backup import pgdump  # noqa: PLC0415

        pgdump.dump(config, content / pgdump.DUMP_NAME)
        progress("databases", 2, 3)
        _copy_audit(home.audit_dir, content / "audit")
        audit_seq = _chain_seq(config)
    else:
        copy = orthanc_index.copy_index(home.index_dir, content / "index.sqlite")
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal
        copy.close()
        progress("databases", 1, 3)
        if home.db_path.is_file():
            _sqlite_copy(home.db_path, content / "archive.db")
        progress("databases", 2, 3)
        audit_seq = _copy_audit(home.audit_dir, content / "audit")
    progress("databases", 3, 3)
    ensure_private_dir(content / "config")
    shutil.copy2(home.config_file, content / "config" / "archive.toml")
    policies = _policies_dir(config)
    if policies.is_dir():
        shutil.copytree(
            policies, content / "policies", ignore=shutil.ignore_patterns("__pycache__")
        )

    # 2. Stored files as ciphertext, incrementally.
    previous = _previous_files(dest)
    sources = [(a, p) for a in AREAS for p in _stored_files(area_dir(config, a))]
    files: list[dict[str, Any]] = []
    new_files = new_bytes = total_bytes = 0
    tmp_dir = dest / "objects"
    for done, (area, path) in enumerate(sources, start=1):
        stat = path.stat()
        old = previous.get((area, path.name))
        if (
            old is not None
            and old.get("size") == stat.st_size
            and old.get("mtime_ns") == stat.st_mtime_ns
            and object_path(dest, old["sha256"]).is_file()
        ):
            digest = old["sha256"]
        else:
            digest, fresh = _copy_object(path, dest, tmp_dir)
            if fresh:
                new_files += 1
                new_bytes += stat.st_size
        total_bytes += stat.st_size
        files.append(
            {
                "area": area,
                "name": path.name,
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "sha256": digest,
            }
        )
        if done == len(sources) or done % 200 == 0:
            progress("files", done, len(sources))
    created = datetime.now(UTC).isoformat(timespec="seconds")
    manifest = {"version": FORMAT_VERSION, "id": backup_id, "created": created, "files": files}
    manifest_raw = _write_json(partial / MANIFEST_NAME, manifest)
    manifest_sha = hashlib.sha256(manifest_raw).hexdigest()

    # 3. The encrypted bundle; its meta.json authenticates the clear manifest.
    meta = {
        "version": FORMAT_VERSION,
        "id": backup_id,
        "created": created,
        "manifest_sha256": manifest_sha,
        "audit_last_seq": audit_seq,
        "custom_policies_dir": Path(config.policies_dir).resolve() != POLICIES_DIR.resolve(),
        "database": config.database.kind,
    }
    (content / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    tar_path = staging / "bundle.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(content, arcname=".")
    progress("bundle", 0, 1)
    bundle = partial / BUNDLE_NAME
    with open(tar_path, "rb") as src, open(bundle, "xb") as out:
        encrypt_stream(keyring, bundle_uuid(backup_id), BUNDLE_CONTENT_TYPE, src, out)
        out.flush()
        os.fsync(out.fileno())
    progress("bundle", 1, 1)
    info = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "id": backup_id,
        "created": created,
        "files": len(files),
        "bytes": total_bytes,
        "new_files": new_files,
        "new_bytes": new_bytes,
        "audit_last_seq": audit_seq,
        "manifest_sha256": manifest_sha,
        "bundle_sha256": _sha256_file(bundle),
        "bundle_kek_id": read_header(bundle).key_id,
    }
    _write_json(partial / INFO_NAME, info)
    fsync_dir(partial)
    return BackupResult(
        id=backup_id,
        path=partial,
        files=len(files),
        bytes=total_bytes,
        new_files=new_files,
        new_bytes=new_bytes,
        audit_last_seq=audit_seq,
    )


# -- list and verify ---------------------------------------------------------------------
def list_backups(dest: Path) -> list[dict[str, Any]]:
    dest = open_destination(dest, create=False)
    out = []
    for backup_id in snapshot_ids(dest):
        try:
            info = read_info(dest, backup_id)
        except ArchiveError as exc:
            info = {"id": backup_id, "problem": str(exc)}
        info["path"] = str(dest / "snapshots" / backup_id)
        out.append(info)
    return out


def open_bundle(dest: Path, backup_id: str, keyring: KeySource) -> dict[str, bytes]:
    """Decrypt (authenticate) the bundle in memory: {member name: bytes}. Nothing in clear
    touches the disk here; restore writes the members into the new home itself."""
    bundle = dest / "snapshots" / backup_id / BUNDLE_NAME
    plain = io.BytesIO()
    try:
        with open(bundle, "rb") as src:
            decrypt_stream(keyring, bundle_uuid(backup_id), BUNDLE_CONTENT_TYPE, src, plain)
    except FileNotFoundError:
        raise ArchiveError(f"Backup {backup_id} has no {BUNDLE_NAME}; it is incomplete.") from None
    plain.seek(0)
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=plain, mode="r") as tar:
        for member in tar.getmembers():
            if member.isfile():
                name = os.path.normpath(member.name)
                if name.startswith("..") or os.path.isabs(name):
                    raise ArchiveError(f"Backup {backup_id} bundle has a bad member name.")
                handle = tar.extractfile(member)
                assert handle is not None
                members[name] = handle.read()
    return members


def _sqlite_ok(data: bytes) -> str:
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(data)
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()


def verify_backup(
    dest: Path,
    backup_id: str,
    keyring: KeySource | None = None,
    *,
    deep: bool = False,
    progress: Progress = _no_progress,
) -> VerifyResult:
    """Check every object's hash against the manifest; with a keyring also the bundle
    (authenticated, manifest hash, database integrity) and, if `deep`, decrypt every
    stored file (authenticates each one without writing clear bytes anywhere)."""
    result = VerifyResult(id=backup_id, ok=False)
    info = read_info(dest, backup_id)
    manifest, raw = read_manifest(dest, backup_id)
    manifest_sha = hashlib.sha256(raw).hexdigest()
    if manifest_sha != info.get("manifest_sha256"):
        result.problems.append("manifest.json does not match the hash in info.json")
    bundle = dest / "snapshots" / backup_id / BUNDLE_NAME
    if not bundle.is_file():
        result.problems.append(f"{BUNDLE_NAME} is missing")
    elif _sha256_file(bundle) != info.get("bundle_sha256"):
        result.problems.append(f"{BUNDLE_NAME} does not match the hash in info.json")
    files = manifest.get("files", [])
    for done, entry in enumerate(files, start=1):
        path = object_path(dest, entry["sha256"])
        label = f"{entry['area']}/{entry['name']}"
        if not path.is_file():
            result.problems.append(f"{label}: object {entry['sha256'][:12]} is missing")
        elif path.stat().st_size != entry["size"] or _sha256_file(path) != entry["sha256"]:
            result.problems.append(f"{label}: object {entry['sha256'][:12]} is damaged")
        elif deep and keyring is not None:
            uuid, _, ct = entry["name"].rpartition(".")
            try:
                with open(path, "rb") as src:
                    decrypt_stream(keyring, uuid, int(ct), src, _Sink())
                result.decrypted += 1
            except (TamperError, ArchiveError) as exc:
                result.problems.append(f"{label}: does not decrypt ({exc})")
        result.files_checked += 1
        if done == len(files) or done % 200 == 0:
            progress("verify", done, len(files))
    if keyring is not None and bundle.is_file():
        try:
            members = open_bundle(dest, backup_id, keyring)
            meta = json.loads(members["meta.json"])
            if meta.get("manifest_sha256") != manifest_sha:
                result.problems.append("the manifest is not the one sealed in the bundle")
            on_postgres = meta.get("database") == "postgresql"
            for name in ("index.sqlite", "archive.db"):
                if name in members:
                    state = _sqlite_ok(members[name])
                    if state != "ok":
                        result.problems.append(f"{name} in the bundle: {state}")
                elif name == "index.sqlite" and not on_postgres:
                    result.problems.append("the bundle holds no Orthanc index")
            if on_postgres and not members.get("postgres.dump", b"").startswith(b"PGDMP"):
                result.problems.append("the bundle holds no PostgreSQL dump")
            result.bundle_checked = True
        except (TamperError, ArchiveError, KeyError, ValueError, tarfile.TarError) as exc:
            result.problems.append(f"the bundle does not open: {exc}")
    result.ok = not result.problems
    return result


class _Sink(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)

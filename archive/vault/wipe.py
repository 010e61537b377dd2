"""The wipe, in the issue's order, and its verification (issue 10).

1. crypto-erase: overwrite then unlink the keyring and every keyring backup the archive
   knows (HOME/keys/backups.json): every KEK dies, so every data key wrapped by one dies;
2. delete the ciphertext (the data directory: storage, index, quarantine, databases);
3. unmount the gocryptfs volume from the data directory (issue 25: the mount stayed in
   place over a deleted directory), then destroy it: gocryptfs.conf (its master key,
   encrypted under the keyring's volume secret) and the whole backing directory. A LUKS
   volume's header cannot be destroyed from here: `plan_volume` names the device so the
   operator runs `cryptsetup luksErase` and destroys any header backup (documented,
   listed in the certificate);
4. remove every other file the home holds but its configuration: every key file under
   HOME/keys (https.pem included: issue 25), Orthanc's generated configuration, the logs;
5. `check_nothing_remains` then says, check by check, what was looked for and found:
   mounts under the home, key files, files, the volume, DICOM magic or canaries.

On PostgreSQL (issue 27) step 2 has a 2b: `drop_database_contents` drops every object
of the archive's role (DROP OWNED ... CASCADE), counted before and after in PostgreSQL's
catalogues, and `database_check` verifies none is left. Dropped, not overwritten: what
this claims and what it leaves to the database's operator is decided in ops/SCALE-OUT.md
("The wipe on PostgreSQL").

Before step 1, `sample_headers` keeps a few ciphertext headers (they hold only wrapped
keys) and checks the live keyring unwraps them: a positive control, so "no key unwraps
the sample" afterwards means something. The signing key for the certificate is the
audit key, held in this process's memory only from before step 1 (never written again).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archive.paths import HomePaths
from archive.vault.backup import known_backup_locations
from archive.vault.envelope import HEADER_LEN, Header, KeySource, _unwrap
from archive.vault.keyring import keyring_path
from archive.vault.shred import delete_tree_files, overwrite_and_unlink
from archive.vault.store import EncryptedStore
from archive.vault.volume import GOCRYPTFS_CONF

DICOM_MAGIC = b"DICM"


@dataclass(frozen=True)
class SampledHeader:
    uuid: str
    content_type: int
    header: bytes


@dataclass
class WipeReport:
    keys_destroyed: list[str] = field(default_factory=list)
    key_files_destroyed: list[str] = field(default_factory=list)
    files_deleted: int = 0
    bytes_deleted: int = 0
    volume: str = "none"
    unmounted: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "keys_destroyed": len(self.keys_destroyed),
            "key_files_destroyed": self.key_files_destroyed,
            "files_deleted": self.files_deleted,
            "bytes_deleted": self.bytes_deleted,
            "volume": self.volume,
            "unmounted": self.unmounted,
        }


def sample_headers(
    store: EncryptedStore, count: int = 16, seed: int | None = None
) -> list[SampledHeader]:
    """Up to `count` headers, chosen at random, each unwrapped by the live keyring first."""
    entries = list(store.entries())
    rng = random.Random(seed)
    chosen = rng.sample(entries, min(count, len(entries)))
    out = []
    for uuid, ct, path in chosen:
        if path is None:  # a row of the database store ([storage] kind = "postgresql")
            head = store.envelope(uuid, ct)[:HEADER_LEN]
        else:
            with open(path, "rb") as handle:
                head = handle.read(HEADER_LEN)
        _unwrap(store.keyring, Header.parse(head, uuid, ct), uuid, ct)  # control
        out.append(SampledHeader(uuid, ct, head))
    return out


def key_locations(paths: HomePaths) -> list[Path]:
    """Every file holding key material the archive knows of: keyring and backups."""
    return [keyring_path(paths.keys_dir), *known_backup_locations(paths.keys_dir)]


def crypto_erase(paths: HomePaths, kek_ids: Iterable[str]) -> WipeReport:
    """Step 1: destroy the keyring and every known backup (overwrite, fsync, unlink)."""
    report = WipeReport(keys_destroyed=list(kek_ids))
    for location in key_locations(paths):
        if overwrite_and_unlink(location) or not location.exists():
            report.key_files_destroyed.append(str(location))
    return report


def delete_ciphertext(paths: HomePaths, report: WipeReport) -> WipeReport:
    """Step 2: every file under the data directory (its keys are already gone)."""
    files, size = delete_tree_files(paths.data_dir)
    report.files_deleted += files
    report.bytes_deleted += size
    return report


def unmount_volume(paths: HomePaths, report: WipeReport) -> WipeReport:
    """Step 3a: unmount the gocryptfs volume from HOME/data (VolumeError if it cannot be:
    the wipe then stops, saying so), then remove the mount point and whatever the mount
    hid under it."""
    from archive.vault import volume

    state = volume.status(paths)
    if state.mounted and state.kind == "gocryptfs":
        volume.unmount(paths)
        report.unmounted = str(paths.data_dir)
    files, size = delete_tree_files(paths.data_dir)
    report.files_deleted += files
    report.bytes_deleted += size
    return report


def destroy_volume(paths: HomePaths, report: WipeReport) -> WipeReport:
    """Step 3b: the gocryptfs configuration (master key) and the backing directory."""
    conf = paths.volume_dir / GOCRYPTFS_CONF
    if conf.exists():
        overwrite_and_unlink(conf)
        report.volume = f"gocryptfs volume {paths.volume_dir} (gocryptfs.conf overwritten, deleted)"
    files, size = delete_tree_files(paths.volume_dir)  # the backing directory too
    report.files_deleted += files
    report.bytes_deleted += size
    return report


def remove_leftovers(paths: HomePaths, report: WipeReport) -> WipeReport:
    """Step 4: every key file left under HOME/keys (https.pem, anything else: overwritten,
    then unlinked), the keys directory, Orthanc's generated configuration and the logs.
    Only archive.toml stays (no secret: it names paths and ports)."""
    if paths.keys_dir.is_dir():
        for path in sorted(paths.keys_dir.rglob("*")):
            if path.is_file() or path.is_symlink():
                overwrite_and_unlink(path)
                report.key_files_destroyed.append(str(path))
    for directory in (paths.keys_dir, paths.orthanc_dir, paths.run_dir):
        files, size = delete_tree_files(directory)
        report.files_deleted += files
        report.bytes_deleted += size
    return report


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'FAILED'} ({self.detail})"


def _mounts_under(root: Path) -> list[str]:
    from archive.vault.volume import _unescape

    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split(" - ")[0].split()
        if len(parts) >= 5:
            point = Path(_unescape(parts[4]))
            if point == root or root in point.parents:
                found.append(str(point))
    return found


def check_nothing_remains(
    paths: HomePaths, canaries: Sequence[bytes] = (), keep: Sequence[Path] = ()
) -> list[Check]:
    """What is looked for after the wipe, and what was found: each a Check."""
    root = paths.root
    kept = {Path(k) for k in (paths.config_file, *keep)}
    mounts = _mounts_under(root)
    keys = [str(p) for p in key_locations(paths) if p.exists()]
    if paths.keys_dir.exists():
        keys += [str(p) for p in paths.keys_dir.rglob("*") if not p.is_dir()]
    files = [
        str(p) for p in root.rglob("*") if not p.is_dir() and p not in kept
    ] if root.exists() else []  # fmt: skip
    volume_left = paths.volume_dir.exists()
    plain = find_plaintext(root, canaries) if root.exists() else []
    return [
        Check("mounts", not mounts, f"mount points at or under {root}: {len(mounts)}"),
        Check(
            "key files",
            not keys,
            f"keyring, its {len(key_locations(paths)) - 1} known backup(s) and every file "
            f"under {paths.keys_dir} (https.pem included): {len(keys)} left",
        ),
        Check(
            "files",
            not files,
            f"files under {root} other than {paths.config_file.name}: {len(files)} left",
        ),
        Check("volume", not volume_left, f"{paths.volume_dir} present: {volume_left}"),
        Check(
            "plaintext",
            not plain,
            f"files with DICOM magic or one of {len(canaries)} canary value(s): {len(plain)}",
        ),
    ]


def unwrap_attempts(samples: Sequence[SampledHeader], keyrings: Sequence[KeySource]) -> int:
    """How many sampled headers any of these keyrings still unwraps (must be 0)."""
    opened = 0
    for s in samples:
        header = Header.parse(s.header, s.uuid, s.content_type)
        for ring in keyrings:
            try:
                _unwrap(ring, header, s.uuid, s.content_type)
            except Exception:  # noqa: BLE001, S112 - any failure: it did not unwrap
                continue
            opened += 1
            break
    return opened


def find_plaintext(root: Path, canaries: Sequence[bytes] = ()) -> list[str]:
    """Files under `root` holding DICOM magic (at offset 128 or anywhere) or a canary."""
    hits = []
    needles = [DICOM_MAGIC, *[c for c in canaries if c]]
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                hits.append(str(path))
    return hits


@dataclass(frozen=True)
class DatabaseDrop:
    """What step 2b found and dropped in the archive's PostgreSQL database, counted by
    PostgreSQL's catalogues before and after (see FORMAT.md, "The wipe on PostgreSQL")."""

    where: str  # "database D at host:port, role R"
    relations: int  # tables, indexes, sequences, views... owned by the role, before
    schemas: int
    large_objects: int
    rows: dict[str, int]  # rows before, of the tables that hold data (those present)
    left: dict[str, int]  # the same three counts after: must all be 0
    checkpoint: str  # whether the role could force a CHECKPOINT (files unlinked now)

    def as_dict(self) -> dict[str, object]:
        return {
            "where": self.where,
            "relations": self.relations,
            "schemas": self.schemas,
            "large_objects": self.large_objects,
            "rows": dict(self.rows),
            "left": dict(self.left),
            "checkpoint": self.checkpoint,
        }


_OWNED = (
    "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid),"
    " (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid),"
    " (SELECT count(*) FROM pg_largeobject_metadata WHERE lomowner = r.oid)"
    " FROM pg_roles r WHERE r.rolname = current_user"
)


def _where(config: Any) -> str:
    s = config.database
    return f"PostgreSQL database {s.database} at {s.host}:{s.port}, role {s.user}"


def _owned(conn: Any) -> dict[str, int]:
    from sqlalchemy import text  # noqa: PLC0415

    relations, schemas, objects = conn.execute(text(_OWNED)).fetchone()
    return {"relations": int(relations), "schemas": int(schemas), "large_objects": int(objects)}


def _data_rows(conn: Any, schema: str) -> dict[str, int]:
    """Rows of the tables that hold the archive's data, where they exist: the
    attachments' envelopes, the audit chain, the catalogue, Orthanc's index."""
    from sqlalchemy import text  # noqa: PLC0415

    rows = {}
    for name in (f"{schema}.vault_blob", f"{schema}.audit_chain", f"{schema}.catalogue_cases",
                 "public.resources", "public.maindicomtags"):  # fmt: skip
        if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is None:
            continue
        rows[name] = int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar() or 0)  # noqa: S608 - fixed names
    return rows


def drop_database_contents(config: Any) -> DatabaseDrop:
    """The archive on PostgreSQL (step 2b): drop every object the archive's database role
    owns in its database (the archive's schema with its tables, the audit chain and the
    attachments' ciphertext rows; Orthanc's index in public; large objects), in one
    transaction, then ask for a CHECKPOINT (the files of dropped relations are unlinked
    at commit, their first segment at the next checkpoint; a role without the right to
    checkpoint leaves that to the server's next one, and the report says so)."""
    from sqlalchemy import text  # noqa: PLC0415

    from archive import db  # noqa: PLC0415

    conn = db.open_database(config)
    try:
        before = _owned(conn)
        rows = _data_rows(conn, config.database.schema)
        with conn.write():
            conn.execute(text("DROP OWNED BY CURRENT_USER CASCADE"))
        left = _owned(conn)
        try:
            with conn.write():
                conn.execute(text("CHECKPOINT"))
            checkpoint = "CHECKPOINT forced by the role: the dropped files are unlinked"
        except Exception:  # noqa: BLE001 - not a superuser nor pg_checkpoint
            checkpoint = ("the role may not CHECKPOINT: PostgreSQL unlinks the dropped "
                          "files' first segments at its next checkpoint")  # fmt: skip
    finally:
        conn.close()
    return DatabaseDrop(_where(config), before["relations"], before["schemas"],
                        before["large_objects"], rows, left, checkpoint)  # fmt: skip


def database_check(config: Any) -> Check:
    """After the wipe: no relation, schema or large object of the archive's role in its
    database (read from PostgreSQL's catalogues over a fresh connection)."""
    from archive import db  # noqa: PLC0415

    try:
        conn = db.open_database(config)
    except Exception as exc:  # noqa: BLE001 - cannot check: the check fails
        return Check("database", False, f"PostgreSQL not reachable to check ({exc})")
    try:
        left = _owned(conn)
    except Exception as exc:  # noqa: BLE001 - cannot check: the check fails
        return Check("database", False, f"PostgreSQL's catalogues not readable ({exc})")
    finally:
        conn.close()
    return Check(
        "database",
        not any(left.values()),
        f"relations, schemas and large objects of role {config.database.user} in "
        f"{_where(config)}: {left['relations']}, {left['schemas']}, "
        f"{left['large_objects']} left",
    )

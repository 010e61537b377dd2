"""Registry of data-backup destinations, next to the keyring-backup registry.

Closure must destroy every copy: the keyring backups are listed by the vault in
HOME/keys/backups.json; data backups (ciphertext plus encrypted bundles) are listed here
in HOME/keys/data-backups.json. It lives in keys/, outside data/, because it describes
where copies are rather than holding any, and is never itself part of a data backup.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from archive.errors import ArchiveError
from archive.vault.fsutil import atomic_write, ensure_private_dir

REGISTRY_FILENAME = "data-backups.json"
REGISTRY_VERSION = 1


def registry_path(keys_dir: Path) -> Path:
    return Path(keys_dir) / REGISTRY_FILENAME


def _load(keys_dir: Path) -> list[dict[str, str]]:
    path = registry_path(keys_dir)
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["locations"]
        if not isinstance(entries, list):
            raise ValueError
        return [dict(e) for e in entries]
    except (ValueError, KeyError, TypeError):
        raise ArchiveError(
            f"The data-backup registry {path} is damaged; repair it by hand (closure needs "
            f"the list of every backup destination) before making another backup."
        ) from None


def record_backup_location(keys_dir: Path, dest: Path, *, note: str = "") -> None:
    """Add (or refresh) `dest` in the registry; written BEFORE any data goes there, so a
    crash never leaves an unlisted copy that closure would miss."""
    dest = Path(dest).expanduser().resolve()
    now = datetime.now(UTC).isoformat(timespec="seconds")
    entries = _load(keys_dir)
    for entry in entries:
        if entry.get("path") == str(dest):
            entry["last_used"] = now
            break
    else:
        entries.append({"path": str(dest), "first_used": now, "last_used": now, "note": note})
    ensure_private_dir(Path(keys_dir))
    body = json.dumps({"version": REGISTRY_VERSION, "locations": entries}, indent=1) + "\n"
    atomic_write(registry_path(keys_dir), body.encode("utf-8"), mode=0o600)


def known_data_backup_locations(keys_dir: Path) -> list[Path]:
    """Every data-backup destination this archive ever wrote to (existing or not)."""
    return [Path(e["path"]) for e in _load(keys_dir) if "path" in e]

"""Generate Orthanc's configuration for an archive home from ops/orthanc.template.json.

The template holds the secure defaults (no Lua, no WebDAV, no explorer, no DICOM server
of Orthanc's own - the archive's DICOM front, archive/dicom/front.py, answers DICOM - and
the plugin guarding HTTP). It is regenerated at
every `serve`, so a change to archive.toml or to the registered DICOM nodes takes effect
without anyone editing Orthanc's JSON by hand.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from string import Template

from archive.config import ArchiveConfig
from archive.errors import ConfigError
from archive.paths import OPS_DIR, PLUGIN_ENTRY, REPO_ROOT

PYTHON_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancPython.so")
POSTGRESQL_INDEX_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so")
TEMPLATE = OPS_DIR / "orthanc.template.json"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class DicomNode:
    """A remote DICOM application Orthanc may talk to (a source or a workstation)."""

    name: str
    aet: str
    host: str
    port: int
    allow_store: bool = False
    allow_find: bool = False
    allow_move: bool = False

    def orthanc_entry(self) -> dict:
        return {
            "AET": self.aet,
            "Host": self.host,
            "Port": self.port,
            "AllowEcho": True,
            "AllowStore": self.allow_store,
            "AllowFind": self.allow_find,
            "AllowMove": self.allow_move,
            "AllowGet": False,
            "AllowFindWorklist": False,
            "AllowStorageCommitment": False,
            "AllowTranscoding": True,
        }


def postgresql_section(config: ArchiveConfig) -> dict:
    """orthanc-postgresql 4.0's options for a shared index (names as in
    /etc/orthanc/postgresql.json). Lock is false because several nodes use one index;
    EnableStorage is false because attachments stay in the archive's encrypted storage
    area. No Password key: libpq reads it from PGPASSFILE, which serve points at a 0600
    file, so the password never sits in this JSON, a command line or a log."""
    db = config.database
    if not db.shared:
        return {"EnableIndex": False, "EnableStorage": False}
    return {
        "EnableIndex": True,
        "EnableStorage": False,
        "Host": db.host,
        "Port": db.port,
        "Database": db.database,
        "Username": db.user,
        "EnableSsl": db.ssl,
        "Lock": False,
        "MaximumConnectionRetries": 10,
        "ConnectionRetryInterval": 2,
        "IndexConnectionsCount": db.index_connections,
    }


def plugin_list(config: ArchiveConfig) -> list[str]:
    """The Python plugin, plus the PostgreSQL index plugin when the index is shared."""
    plugins = [str(PYTHON_PLUGIN)]
    if config.database.shared:
        plugins.append(str(POSTGRESQL_INDEX_PLUGIN))
    return plugins


def render(
    config: ArchiveConfig,
    nodes: list[DicomNode] = (),  # type: ignore[assignment]
    stable_age: int = 10,
    tls_certificate: Path | None = None,
) -> dict:
    """Orthanc's configuration as a dict; the template's secure defaults are kept as is."""
    home = config.home
    modalities = {node.name: node.orthanc_entry() for node in nodes}
    values = {
        "storage_dir": str(home.storage_dir),
        "index_dir": str(home.index_dir),
        "tmp_dir": str(home.tmp_dir),
        "stable_age": str(int(stable_age)),
        "plugins": json.dumps(plugin_list(config)),
        "postgresql": json.dumps(postgresql_section(config)),
        "plugin_entry": str(PLUGIN_ENTRY),
        "http_port": str(config.http.port),
        "remote_access": "false" if config.http.host in LOOPBACK else "true",
        "tls": "true" if config.http.tls else "false",
        "tls_certificate": str(tls_certificate or ""),
        "dicom_aet": config.dicom.aet,
        "dicom_port": str(config.dicom.port),
        "dicom_modalities": json.dumps(modalities),
        "home": str(home.root),
        "repo": str(REPO_ROOT),
    }
    try:
        text = Template(TEMPLATE.read_text(encoding="utf-8")).substitute(values)
        return json.loads(text)
    except (KeyError, ValueError, OSError) as exc:
        raise ConfigError(
            f"The Orthanc template {TEMPLATE} is broken ({exc}); restore it."
        ) from None


def write(config: ArchiveConfig, rendered: dict) -> Path:
    """Write the generated configuration atomically with mode 0600."""
    target = config.home.orthanc_config  # per node: HOME/orthanc/orthanc-node-N.json
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(rendered, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return target

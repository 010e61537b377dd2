"""Where things live inside an archive home and inside the repository.

An archive home is one directory:

    HOME/archive.toml        the archive's configuration (documented TOML)
    HOME/keys/               the keyring, kept outside the data directory (0700)
    HOME/data/               the data directory; in production the mount point of the
                             encrypted volume (0700). Everything below it holds patient data.
        index/               Orthanc's index (SQLite)
        storage/             Orthanc's storage area (encrypted attachments)
        tmp/                 Orthanc's TemporaryDirectory
        archive.db           the archive's own tables (catalogue, access, governance)
        audit/               the tamper-evident audit log
        quarantine/          instances held back from release (encrypted)
    HOME/volume/             backing directory of the encrypted volume, when one is used
    HOME/orthanc/            generated Orthanc configuration
    HOME/run/                pid/lock files and Orthanc's log
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
POLICIES_DIR = REPO_ROOT / "policies"
OPS_DIR = REPO_ROOT / "ops"
PLUGIN_ENTRY = REPO_ROOT / "plugins" / "teaching_archive.py"


@dataclass(frozen=True)
class HomePaths:
    """Named paths inside one archive home; nothing here touches the disk."""

    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "archive.toml"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def volume_dir(self) -> Path:
        return self.root / "volume"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "archive.db"

    @property
    def audit_dir(self) -> Path:
        return self.data_dir / "audit"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def orthanc_dir(self) -> Path:
        return self.root / "orthanc"

    @property
    def orthanc_config(self) -> Path:
        return self.orthanc_dir / "orthanc.json"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "serve.lock"

    @property
    def orthanc_log(self) -> Path:
        return self.run_dir / "orthanc.log"

    def private_dirs(self) -> list[Path]:
        """Directories created with mode 0700."""
        return [
            self.keys_dir,
            self.data_dir,
            self.index_dir,
            self.storage_dir,
            self.tmp_dir,
            self.audit_dir,
            self.quarantine_dir,
            self.orthanc_dir,
            self.run_dir,
        ]

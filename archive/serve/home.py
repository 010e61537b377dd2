"""Create an archive home: directories with 0700, a documented archive.toml, Orthanc config.

Creation is all or nothing: if any step fails, what this call created is removed again,
so a failed `archive init` never leaves a half-made home behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from string import Template

from archive.config import ArchiveConfig, load_config
from archive.errors import ConfigError
from archive.paths import OPS_DIR, HomePaths
from archive.serve import orthanc_config

CONFIG_TEMPLATE = OPS_DIR / "archive.template.toml"


def init_home(
    root: Path,
    *,
    http_port: int = 8042,
    dicom_port: int = 4242,
    dicom_aet: str = "TEACHARCHIVE",
    school_prefix: str = "NSR",
) -> ArchiveConfig:
    """Make a new archive home at `root` and return its validated configuration."""
    home = HomePaths(root.expanduser().resolve())
    if home.config_file.exists():
        raise ConfigError(f"{home.root} is already an archive home; use it, or pick another path.")
    if home.root.exists() and not home.root.is_dir():
        raise ConfigError(f"{home.root} exists and is not a directory; pick another path.")
    if home.root.is_dir() and any(home.root.iterdir()):
        raise ConfigError(f"{home.root} is not empty; give a new or empty directory.")
    created_root = not home.root.exists()
    try:
        home.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home.root, 0o700)
        for directory in home.private_dirs():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
        text = Template(CONFIG_TEMPLATE.read_text(encoding="utf-8")).substitute(
            school_prefix=school_prefix,
            http_port=http_port,
            dicom_port=dicom_port,
            dicom_aet=dicom_aet,
        )
        fd = os.open(home.config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        config = load_config(home.root)
        # A self-signed HTTPS certificate for the demo ([http] tls = true uses it);
        # production puts the school's certificate in the same file.
        from archive.access.tls import make_self_signed

        make_self_signed(home, [config.http.host])
        orthanc_config.write(config, orthanc_config.render(config))
        return config
    except BaseException:
        _undo(home, created_root)
        raise


def _undo(home: HomePaths, created_root: bool) -> None:
    if created_root:
        shutil.rmtree(home.root, ignore_errors=True)
        return
    for child in list(home.root.iterdir()):
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def check_home_permissions(home: HomePaths) -> list[str]:
    """Directories that other users could read: each is a finding, not a crash."""
    problems = []
    for directory in [home.root, *home.private_dirs()]:
        if directory.exists() and directory.stat().st_mode & 0o077:
            problems.append(f"{directory} is readable by other users; chmod 700 it")
    return problems


def is_loopback(host: str) -> bool:
    return host in orthanc_config.LOOPBACK

"""The archive's configuration: one documented TOML file in the archive home.

Loading validates every field and raises ConfigError with a message that names the
field and says how to fix it, so Orthanc never starts on a half-understood config.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from archive.errors import ConfigError
from archive.paths import POLICIES_DIR, HomePaths


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8042
    tls: bool = False


@dataclass(frozen=True)
class DicomConfig:
    aet: str = "TEACHARCHIVE"
    port: int = 4242


@dataclass(frozen=True)
class KeyringConfig:
    # Where the keyring passphrase comes from when not typed at a prompt: a file path,
    # or the name of a systemd credential (read from $CREDENTIALS_DIRECTORY).
    passphrase_file: str = ""
    systemd_credential: str = ""


@dataclass(frozen=True)
class VolumeConfig:
    # "gocryptfs" mounts HOME/volume (ciphertext) on HOME/data; "luks" means the data
    # directory is a mounted LUKS2 device provisioned by ops/; "none" is plain disk.
    kind: str = "none"
    allow_unencrypted: bool = False


@dataclass(frozen=True)
class ArchiveConfig:
    home: HomePaths
    school_prefix: str = "NSR"
    policies_dir: Path = POLICIES_DIR
    http: HttpConfig = field(default_factory=HttpConfig)
    dicom: DicomConfig = field(default_factory=DicomConfig)
    keyring: KeyringConfig = field(default_factory=KeyringConfig)
    volume: VolumeConfig = field(default_factory=VolumeConfig)


def _section(raw: dict, name: str) -> dict:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table in archive.toml; see the comments there.")
    return value


def _port(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ConfigError(f"{name} must be a port number from 1 to 65535, not {value!r}.")
    return value


def _host(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError("http.host must be an IP address such as 127.0.0.1.")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if value != "localhost":
            raise ConfigError(
                f"http.host {value!r} is not an IP address; use 127.0.0.1 or 0.0.0.0."
            ) from None
    return value


def _aet(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 16 or not value.isascii():
        raise ConfigError(f"dicom.aet must be 1 to 16 ASCII characters, not {value!r}.")
    if any(c in value for c in "\\") or value != value.strip():
        raise ConfigError(f"dicom.aet {value!r} has spaces or a backslash; remove them.")
    return value


def parse_config(raw: dict, home: HomePaths) -> ArchiveConfig:
    """Validate a decoded archive.toml."""
    archive = _section(raw, "archive")
    http = _section(raw, "http")
    dicom = _section(raw, "dicom")
    keyring = _section(raw, "keyring")
    volume = _section(raw, "volume")
    prefix = archive.get("school_prefix", "NSR")
    if not isinstance(prefix, str) or not prefix.isalnum() or not 2 <= len(prefix) <= 8:
        raise ConfigError("archive.school_prefix must be 2 to 8 letters or digits, e.g. NSR.")
    policies = archive.get("policies_dir", "")
    policies_dir = Path(policies) if policies else POLICIES_DIR
    if not policies_dir.is_dir():
        raise ConfigError(f"archive.policies_dir {policies_dir} is not a directory.")
    tls = http.get("tls", False)
    if not isinstance(tls, bool):
        raise ConfigError("http.tls must be true or false.")
    kind = volume.get("kind", "none")
    if kind not in ("none", "gocryptfs", "luks"):
        raise ConfigError("volume.kind must be one of none, gocryptfs, luks.")
    allow = volume.get("allow_unencrypted", False)
    if not isinstance(allow, bool):
        raise ConfigError("volume.allow_unencrypted must be true or false.")
    http_port = _port(http.get("port", 8042), "http.port")
    dicom_port = _port(dicom.get("port", 4242), "dicom.port")
    if http_port == dicom_port:
        raise ConfigError("http.port and dicom.port must differ.")
    return ArchiveConfig(
        home=home,
        school_prefix=prefix,
        policies_dir=policies_dir,
        http=HttpConfig(host=_host(http.get("host", "127.0.0.1")), port=http_port, tls=tls),
        dicom=DicomConfig(aet=_aet(dicom.get("aet", "TEACHARCHIVE")), port=dicom_port),
        keyring=KeyringConfig(
            passphrase_file=str(keyring.get("passphrase_file", "")),
            systemd_credential=str(keyring.get("systemd_credential", "")),
        ),
        volume=VolumeConfig(kind=kind, allow_unencrypted=allow),
    )


def load_config(home_dir: Path | str) -> ArchiveConfig:
    """Read and validate HOME/archive.toml."""
    home = HomePaths(Path(home_dir).expanduser().resolve())
    if not home.root.is_dir():
        raise ConfigError(
            f"No archive home at {home.root}. Create one with: archive init --home {home.root}"
        )
    if not home.config_file.is_file():
        raise ConfigError(
            f"{home.root} is not an archive home (no archive.toml). "
            f"Create one with: archive init --home {home.root}"
        )
    try:
        raw = tomllib.loads(home.config_file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{home.config_file} is not valid TOML ({exc}). Fix it, or move it away and "
            f"run archive init again."
        ) from None
    return parse_config(raw, home)

"""Where the keyring passphrase comes from, in a fixed order.

Never from an environment variable's *value* (it would leak through /proc and child
processes); an environment variable may only name a file.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from archive.config import ArchiveConfig
from archive.vault.errors import KeyringError, KeyringMissingError
from archive.vault.keyring import Keyring, check_private_file, keyring_path

PASSPHRASE_FILE_ENV = "ARCHIVE_KEYRING_PASSPHRASE_FILE"  # noqa: S105 - names a file


def read_passphrase_file(path: Path, what: str = "passphrase file") -> str:
    """Read a passphrase file: must be private, non-empty; one trailing newline dropped."""
    path = Path(path).expanduser()
    try:
        check_private_file(path, what)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyringError(f"The {what} {path} does not exist; create it (mode 0600).") from None
    except (PermissionError, IsADirectoryError, UnicodeDecodeError) as exc:
        raise KeyringError(f"Cannot read the {what} {path} ({exc.__class__.__name__}).") from None
    passphrase = text[:-1] if text.endswith("\n") else text
    passphrase = passphrase[:-1] if passphrase.endswith("\r") else passphrase
    if not passphrase:
        raise KeyringError(f"The {what} {path} is empty; put the passphrase in it.")
    return passphrase


def _systemd_credential(name: str) -> Path:
    directory = os.environ.get("CREDENTIALS_DIRECTORY", "")
    if not directory:
        raise KeyringError(
            f"keyring.systemd_credential is {name!r} but $CREDENTIALS_DIRECTORY is not set; "
            f"run under systemd with LoadCredential={name}:... or use keyring.passphrase_file."
        )
    if "/" in name or name in (".", ".."):
        raise KeyringError(f"keyring.systemd_credential {name!r} must be a plain name.")
    return Path(directory) / name


def obtain_passphrase(config: ArchiveConfig, *, prompt: bool, confirm: bool = False) -> str:
    """The keyring passphrase: systemd credential, passphrase_file, the file named by
    $ARCHIVE_KEYRING_PASSPHRASE_FILE, or (if `prompt`) an interactive prompt."""
    if config.keyring.systemd_credential:
        return read_passphrase_file(
            _systemd_credential(config.keyring.systemd_credential), "systemd credential"
        )
    if config.keyring.passphrase_file:
        path = Path(config.keyring.passphrase_file).expanduser()
        if not path.is_absolute():
            path = config.home.root / path
        return read_passphrase_file(path, "keyring.passphrase_file")
    env_file = os.environ.get(PASSPHRASE_FILE_ENV, "")
    if env_file:
        return read_passphrase_file(Path(env_file), f"file named by ${PASSPHRASE_FILE_ENV}")
    if prompt:
        return prompt_passphrase("Keyring passphrase: ", confirm=confirm)
    raise KeyringError(
        "No keyring passphrase available: set keyring.passphrase_file in archive.toml (a "
        "0600 file), or keyring.systemd_credential, or set "
        f"{PASSPHRASE_FILE_ENV} to the path of such a file, or run interactively."
    )


def prompt_passphrase(label: str, *, confirm: bool = False) -> str:
    try:
        first = getpass.getpass(label)
        if confirm and getpass.getpass("Repeat: ") != first:
            raise KeyringError("The two passphrases differ; nothing was changed. Try again.")
    except EOFError:
        raise KeyringError(
            "No terminal to ask for the passphrase; configure keyring.passphrase_file."
        ) from None
    if not first:
        raise KeyringError("Empty passphrase; nothing was changed.")
    return first


def open_keyring_for_cli(config: ArchiveConfig, *, prompt: bool = True) -> Keyring:
    """Open HOME/keys/keyring.json with the configured passphrase source."""
    path = keyring_path(config.home.keys_dir)
    if not path.exists():
        raise KeyringMissingError(
            f"No keyring at {path}. Create one with: archive keys init --home "
            f"{config.home.root} (or restore a backup with archive keys restore)."
        )
    return Keyring.open(path, obtain_passphrase(config, prompt=prompt))

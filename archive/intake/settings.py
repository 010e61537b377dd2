"""Intake settings: the optional [intake] table of archive.toml, plus the token.

The bearer token of a personnel (intake) user is read from a file, never from argv
(visible in `ps`): ARCHIVE_INTAKE_TOKEN_FILE, else [intake] token_file, else the systemd
credential named by [intake] token_credential (default "intake-token") in
$CREDENTIALS_DIRECTORY. The file must not be readable by group or others.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from archive.config import ArchiveConfig
from archive.errors import ArchiveError
from archive.intake.backoff import Backoff

TOKEN_ENV = "ARCHIVE_INTAKE_TOKEN_FILE"  # noqa: S105 - an env var name
DEFAULT_CREDENTIAL = "intake-token"


class IntakeError(ArchiveError):
    """The watcher cannot run as configured; the message says what to fix."""


@dataclass(frozen=True)
class IntakeSettings:
    token_file: Path | None = None
    stable_seconds: float = 2.0  # size+mtime unchanged this long = complete
    settle_seconds: float = 0.2  # after a close event
    workers: int = 4  # concurrent uploads
    backoff: Backoff = Backoff()
    once_attempts: int = 3  # with --once: attempts before a retryable file is left in place
    timeout: float = 120.0  # per upload


def _number(table: dict, name: str, default: float, minimum: float) -> float:
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise IntakeError(f"intake.{name} must be a number >= {minimum}, not {value!r}.")
    return float(value)


def load_settings(config: ArchiveConfig, env: dict[str, str] | None = None) -> IntakeSettings:
    """Read [intake] from archive.toml (all optional) and locate the token file."""
    env = dict(os.environ) if env is None else env
    try:
        raw = tomllib.loads(config.home.config_file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise IntakeError(f"cannot read {config.home.config_file} ({exc}).") from None
    table = raw.get("intake", {})
    if not isinstance(table, dict):
        raise IntakeError("[intake] in archive.toml must be a table.")
    token_file: Path | None = None
    if env.get(TOKEN_ENV):
        token_file = Path(env[TOKEN_ENV])
    elif table.get("token_file"):
        token_file = Path(str(table["token_file"]))
    else:
        credentials = env.get("CREDENTIALS_DIRECTORY")
        name = str(table.get("token_credential", DEFAULT_CREDENTIAL))
        if credentials and (Path(credentials) / name).is_file():
            token_file = Path(credentials) / name
    return IntakeSettings(
        token_file=token_file,
        stable_seconds=_number(table, "stable_seconds", 2.0, 0.0),
        settle_seconds=_number(table, "settle_seconds", 0.2, 0.0),
        workers=int(_number(table, "workers", 4, 1)),
        backoff=Backoff(
            initial=_number(table, "retry_initial_seconds", 1.0, 0.01),
            ceiling=_number(table, "retry_max_seconds", 300.0, 0.01),
        ),
        once_attempts=int(_number(table, "once_attempts", 3, 1)),
        timeout=_number(table, "upload_timeout_seconds", 120.0, 1.0),
    )


def read_token(path: Path | None) -> str:
    """The token in `path`; refuses a missing, empty or group/other-readable file."""
    if path is None:
        raise IntakeError(
            f"no intake token: create one with `archive tokens create <intake-user> --label "
            f"intake`, save it in a 0600 file and set {TOKEN_ENV} (or [intake] token_file, "
            f"or the systemd credential {DEFAULT_CREDENTIAL})."
        )
    try:
        st = os.stat(path)
    except OSError as exc:
        raise IntakeError(f"cannot read the intake token file {path} ({exc.strerror}).") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO) and not _is_credential(path):
        raise IntakeError(f"intake token file {path} is readable by others; chmod 600 it.")
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise IntakeError(f"cannot read the intake token file {path} ({exc.strerror}).") from None
    if not token or any(c.isspace() for c in token):
        raise IntakeError(f"intake token file {path} is empty or malformed; write the token alone.")
    return token


def _is_credential(path: Path) -> bool:
    """systemd credentials are 0440 in a private per-service directory: accept them."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    return bool(credentials) and path.parent == Path(credentials)

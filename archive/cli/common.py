"""Shared CLI pieces: the --home option, one-line errors, JSON output."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from archive.config import ArchiveConfig, load_config
from archive.errors import ArchiveError

HomeOption = Annotated[
    Path,
    typer.Option(
        "--home",
        envvar="ARCHIVE_HOME",
        help="The archive home directory (or set ARCHIVE_HOME).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit non-zero: the CLI's only way to report errors."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def load(home: Path) -> ArchiveConfig:
    """Load the home's configuration or exit with the reason."""
    try:
        return load_config(home)
    except ArchiveError as exc:
        fail(str(exc))


def emit_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))


def actor() -> str:
    """The local operator's name for CLI actions, recorded in the audit log."""
    return os.environ.get("ARCHIVE_OPERATOR") or os.environ.get("USER") or "local-operator"


def stdin_is_tty() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()

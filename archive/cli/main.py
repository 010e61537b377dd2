"""Entry point of the `archive` command.

Command groups live in sibling modules; each defines `register(app)`. Discovery keeps
this file stable while rooms add commands, and an ArchiveError anywhere becomes one
clear line on stderr instead of a traceback.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import archive.cli as cli_pkg
from archive import __version__
from archive.errors import ArchiveError

app = typer.Typer(
    name="archive",
    help="Secure teaching archive for a school of radiology, built on Orthanc.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Secure teaching archive: de-identified, encrypted, named-user access, audited."""


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if info.name in ("main", "common") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"archive.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_all()


def run() -> None:
    """Console entry that turns domain errors into one line and exit code 1."""
    try:
        app()
    except ArchiveError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None

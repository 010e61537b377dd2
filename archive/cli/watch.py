"""`archive watch DIR`: ingest what is dropped in a folder, delete it once stored."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail, load
from archive.errors import ArchiveError
from archive.server import base_url

OVERWRITE_HELP = (
    "Overwrite each source with zeros (and fsync) before deleting it. Limits: on SSDs, "
    "flash drives, copy-on-write or journaling filesystems (btrfs, ZFS, ext4 "
    "data=journal), snapshots and backups the old blocks can survive; only encrypting "
    "the drop folder's disk really protects deleted files."
)


def register(app: typer.Typer) -> None:
    @app.command("watch")
    def watch_cmd(
        directory: Annotated[
            Path, typer.Argument(help="The drop folder (nested folders, zips and DICOMDIR).")
        ],
        home: HomeOption,
        once: Annotated[
            bool, typer.Option("--once", help="Ingest what is there now, then exit.")
        ] = False,
        rejects: Annotated[
            Path | None,
            typer.Option(
                "--rejects",
                help="Where rejected files go with a .reason.txt (default DATA/intake/rejects,"
                " on the encrypted volume). Must not be inside DIR.",
            ),
        ] = None,
        overwrite: Annotated[
            bool, typer.Option("--overwrite-before-delete", help=OVERWRITE_HELP)
        ] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Upload every DICOM instance dropped in DIR to the archive (REST, so it is
        de-identified like C-STORE) and delete each source once the archive confirms it.

        The intake user's token is read from the file named by ARCHIVE_INTAKE_TOKEN_FILE
        or token_file in the intake table of archive.toml, or the systemd credential
        intake-token; never from argv.
        Exit status: 0 all done, 2 files kept for retry (--once), 1 error.
        """
        from archive.intake import Intake, IntakeError, Uploader, load_settings, read_token

        config = load(home)
        directory = directory.expanduser().resolve()
        if not directory.is_dir():
            fail(f"{directory} is not a folder; create it or give the drop folder's path.")
        try:
            settings = load_settings(config)
            token = read_token(settings.token_file)
        except IntakeError as exc:
            fail(str(exc))
        if rejects is not None:
            rejects = rejects.expanduser().resolve()
            if rejects == directory or directory in rejects.parents:
                fail("--rejects must not be inside the watched folder; choose another folder.")
        uploader = Uploader(base_url(config), token, settings.timeout, settings.workers)
        progress = _Progress(enabled=not as_json and sys.stderr.isatty())
        stop = threading.Event()
        try:
            intake = Intake(
                config,
                directory,
                settings,
                uploader,
                rejects_dir=rejects,
                overwrite=overwrite,
                actor=actor(),
                on_progress=progress.update,
            )
        except (ArchiveError, OSError) as exc:
            uploader.close()
            fail(f"cannot start the watcher: {exc}")
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        try:
            with progress:
                summary = intake.run_once() if once else intake.watch(stop)
        except ArchiveError as exc:
            fail(str(exc))
        finally:
            uploader.close()
            intake.journal.close()
        result = summary.as_dict()
        if as_json:
            emit_json(result)
        else:
            typer.echo(
                f"stored {summary.stored}, already stored {summary.already}, "
                f"held in quarantine {summary.held}, duplicates "
                f"{summary.duplicates}, rejected {summary.rejected}, permission denied "
                f"{summary.denied}, retries {summary.retried}, sources deleted "
                f"{summary.deleted}, kept for retry {summary.kept}"
            )
            if summary.kept and summary.last_problem:
                typer.echo(f"last problem: {summary.last_problem}", err=True)
        if summary.kept:
            raise typer.Exit(2)


class _Progress:
    """A rich progress line on a terminal; silent otherwise (services, --json)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress = None
        self._task = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]intake"),
                BarColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("waiting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, kind: str, summary) -> None:
        if self._progress is None:
            return
        done = (
            summary.stored + summary.already + summary.held + summary.duplicates + summary.rejected
        )
        self._progress.update(
            self._task,
            completed=done,
            description=f"stored {summary.stored} held {summary.held} rejected "
            f"{summary.rejected} retries {summary.retried}",
        )

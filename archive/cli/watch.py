"""`archive watch DIR`: ingest what is dropped in a folder, delete it once stored;
`archive rejects list|show|delete`: the sealed rejects, for personnel on the home."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from archive.cli.common import (
    HomeOption,
    JsonOption,
    actor,
    emit_json,
    fail,
    load,
    stdin_is_tty,
)
from archive.errors import ArchiveError
from archive.serve.server import base_url

OVERWRITE_HELP = (
    "Overwrite each source with zeros (and fsync) before deleting it. Limits: on SSDs, "
    "flash drives, copy-on-write or journaling filesystems (btrfs, ZFS, ext4 "
    "data=journal), snapshots and backups the old blocks can survive; only encrypting "
    "the drop folder's disk really protects deleted files."
)


def register(app: typer.Typer) -> None:
    register_rejects(app)

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
                help="Where rejected files are sealed (encrypted under the keyring; default "
                "DATA/intake/rejects, on the encrypted volume). Must not be inside DIR. "
                "See `archive rejects`.",
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
        intake-token; never from argv. The keyring opens as for `archive serve`
        (rejected files are sealed under it, the journal's fingerprints keyed by it).
        Links, FIFOs and devices in DIR are skipped and reported, never followed.
        Exit status: 0 all done, 2 files kept for retry (--once), 1 error.
        """
        from archive.intake import Intake, IntakeError, Uploader, load_settings, read_token
        from archive.runtime import open_keyring

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
        try:
            keyring = open_keyring(config, prompt=stdin_is_tty())
        except ArchiveError as exc:
            fail(f"cannot open the keyring: {exc}")
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
                keyring=keyring,
                on_notice=lambda line: typer.echo(f"watch: {line}", err=True),
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
            intake.close()
            intake.journal.close()
        result = summary.as_dict()
        if as_json:
            emit_json(result)
        else:
            typer.echo(
                f"stored {summary.stored}, already stored {summary.already}, "
                f"held in quarantine {summary.held}, duplicates "
                f"{summary.duplicates}, rejected {summary.rejected}, permission denied "
                f"{summary.denied}, skipped (links, special files) {summary.skipped}, "
                f"retries {summary.retried}, sources deleted "
                f"{summary.deleted}, kept for retry {summary.kept}"
            )
            if summary.kept and summary.last_problem:
                typer.echo(f"last problem: {summary.last_problem}", err=True)
        if summary.kept:
            raise typer.Exit(2)


RejectsOption = Annotated[
    Path | None,
    typer.Option("--rejects", help="The rejects folder given to `archive watch`, if any."),
]


def register_rejects(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="The watch folder's rejected files, sealed under the keyring: list, show, delete.",
        no_args_is_help=True,
    )
    app.add_typer(sub, name="rejects")

    def opened(home: Path, rejects: Path | None):
        from archive.intake import Journal, RejectStore
        from archive.runtime import Runtime

        config = load(home)
        try:
            runtime = Runtime.open(config, prompt=stdin_is_tty())
            journal = Journal(runtime.db())
        except ArchiveError as exc:
            fail(str(exc))
        base = (rejects or config.home.data_dir / "intake" / "rejects").expanduser().resolve()
        return runtime, RejectStore(base, runtime.keyring, journal)

    def audit(runtime, action: str, outcome: str, target: str | None, **detail) -> None:
        from archive.audit import AuditEvent

        runtime.record(
            AuditEvent(
                action, outcome, actor=actor(), source="cli", target=target, detail=detail
            )  # fmt: skip
        )

    @sub.command("list")
    def list_cmd(home: HomeOption, rejects: RejectsOption = None,
                 as_json: JsonOption = False) -> None:  # fmt: skip
        """Sealed rejects: id, when, size and why (no names: `show` decrypts the name)."""
        runtime, store = opened(home, rejects)
        items = store.list()
        audit(runtime, "intake.rejects.list", "success", None, count=len(items))
        if as_json:
            emit_json([i.as_dict() for i in items])
            return
        if not items:
            typer.echo("no rejected files")
        for item in items:
            typer.echo(f"{item.id}  {item.rejected_at}  {item.size:>10} bytes  {item.reason}")

    @sub.command("show")
    def show_cmd(
        reject_id: Annotated[str, typer.Argument(help="The reject's id (r-...).")],
        home: HomeOption,
        to: Annotated[
            Path | None,
            typer.Option("--to", help="Also write the decrypted file here (a new 0600 file; "
                         "keep it on the encrypted volume and delete it after review)."),
        ] = None,
        rejects: RejectsOption = None,
        as_json: JsonOption = False,
    ) -> None:  # fmt: skip
        """A reject's reason, size and original name (decrypted); --to writes its bytes."""
        from archive.intake import RejectError

        runtime, store = opened(home, rejects)
        try:
            item = store.get(reject_id)
            data, name = store.read(reject_id)
        except RejectError as exc:
            audit(runtime, "intake.rejects.show", "failure", reject_id, reason="unknown")
            fail(str(exc))
        if to is not None:
            try:
                fd = os.open(to, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except OSError as exc:
                fail(f"cannot create {to} ({exc.strerror}); name a new file.")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        audit(runtime, "intake.rejects.show", "success", reject_id, written=to is not None)
        if as_json:
            emit_json({**item.as_dict(), "name": name})
            return
        typer.echo(f"{item.id}: {item.reason}")
        typer.echo(f"  rejected at: {item.rejected_at}  size: {item.size} bytes")
        typer.echo(f"  original name: {name}")
        if to is not None:
            typer.echo(f"  decrypted to {to}")

    @sub.command("delete")
    def delete_cmd(
        reject_id: Annotated[str, typer.Argument(help="The reject's id (r-...).")],
        home: HomeOption,
        rejects: RejectsOption = None,
    ) -> None:
        """Delete a sealed reject for good (after it was fixed and dropped again)."""
        from archive.intake import RejectError

        runtime, store = opened(home, rejects)
        try:
            store.delete(reject_id)
        except RejectError as exc:
            audit(runtime, "intake.rejects.delete", "failure", reject_id, reason="unknown")
            fail(str(exc))
        audit(runtime, "intake.rejects.delete", "success", reject_id)
        typer.echo(f"{reject_id}: deleted")


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

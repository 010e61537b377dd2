"""`archive backup create|list|verify|restore`: encrypted, incremental backups of a home.

Backups need the archive stopped (Orthanc keeps its index locked while it runs); the
command holds the home's serve lock so no `archive serve` starts meanwhile. Keys are
never in a data backup: keep `archive keys backup` apart from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from archive.audit import AuditError, AuditEvent, audit_log_for
from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail, load
from archive.config import ArchiveConfig
from archive.errors import ArchiveError


def progress_printer(enabled: bool):
    """Progress lines on stderr (kept off stdout so --json stays parseable)."""

    def show(phase: str, done: int, total: int) -> None:
        if enabled:
            typer.echo(f"{phase}: {done}/{total}", err=True)

    return show


def hold_stopped_home(config: ArchiveConfig):
    """The home's serve lock, or a one-line failure if `archive serve` runs on it."""
    from archive.serve.server import HomeLock, ServeError

    lock = HomeLock(config.home.lock_file)
    try:
        lock.acquire()
    except ServeError:
        pid = HomeLock.holder(config.home.lock_file)
        fail(
            f"the archive is running on this home (pid {pid}); Orthanc holds its index "
            f"exclusively, so stop it first (systemctl stop, or Ctrl-C), then run this again."
        )
    return lock


def _recovery(path: Path | None) -> str:
    from archive.vault.passphrase import prompt_passphrase, read_passphrase_file

    if path is not None:
        return read_passphrase_file(path, "recovery passphrase file")
    return prompt_passphrase("Recovery passphrase (of the keyring backup): ")


def _new_passphrase(path: Path | None) -> str:
    from archive.vault.passphrase import (
        PASSPHRASE_FILE_ENV,
        prompt_passphrase,
        read_passphrase_file,
    )

    if path is not None:
        return read_passphrase_file(path, "passphrase file")
    env_file = os.environ.get(PASSPHRASE_FILE_ENV, "")
    if env_file:
        return read_passphrase_file(Path(env_file), f"file named by ${PASSPHRASE_FILE_ENV}")
    return prompt_passphrase("New keyring passphrase for the restored home: ", confirm=True)


def _damaged(where: Path, exc: Exception) -> str:
    return (
        f"the backup at {where} is damaged or is not an archive backup (its manifest or "
        f"bundle lacks what it should hold: {type(exc).__name__}); use another backup."
    )


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Encrypted, incremental backups of the archive and restore.", no_args_is_help=True
    )
    app.add_typer(sub, name="backup")

    @sub.command("create")
    def create_cmd(
        home: HomeOption,
        to: Annotated[Path, typer.Option("--to", help="Backup destination folder (made if new).")],
        as_json: JsonOption = False,
        quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
    ) -> None:
        """Snapshot the stopped archive: Orthanc's index, archive.db, audit log, config and
        policies (encrypted bundle) and the stored files (as ciphertext, only new ones)."""
        from archive.backup import create_backup
        from archive.vault import open_keyring_for_cli

        config = load(home)
        lock = hold_stopped_home(config)
        try:
            ring = open_keyring_for_cli(config)
            result = create_backup(
                config, ring, to, actor=actor(), progress=progress_printer(not quiet)
            )
        except ArchiveError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"could not write the backup ({exc.strerror}: {exc.filename}); nothing was "
                 f"published, fix the destination and run again.")  # fmt: skip
        finally:
            lock.release()
        if as_json:
            emit_json(result.as_dict())
        else:
            typer.echo(
                f"Backup {result.id} written to {result.path}: {result.files} files "
                f"({result.new_files} new), audit up to seq {result.audit_last_seq}."
            )
            typer.echo("Keys are not in it: keep a keyring backup (archive keys backup) apart.")

    @sub.command("list")
    def list_cmd(
        dest: Annotated[Path, typer.Argument(help="A backup destination folder.")],
        as_json: JsonOption = False,
    ) -> None:
        """List the finished backups in a destination."""
        from archive.backup import list_backups

        try:
            entries = list_backups(dest)
        except ArchiveError as exc:
            fail(str(exc))
        if as_json:
            emit_json({"destination": str(dest), "backups": entries})
            return
        if not entries:
            typer.echo("no backups")
        for e in entries:
            typer.echo(
                f"{e.get('id')}  {e.get('created', '?')}  {e.get('files', '?')} files "
                f"({e.get('new_files', '?')} new)  audit seq {e.get('audit_last_seq', '?')}"
                + (f"  PROBLEM: {e['problem']}" if "problem" in e else "")
            )

    @sub.command("verify")
    def verify_cmd(
        dest: Annotated[Path, typer.Argument(help="A backup destination (or one snapshot).")],
        backup_id: Annotated[
            str | None, typer.Option("--id", help="Which backup (default: the latest).")
        ] = None,
        all_: Annotated[bool, typer.Option("--all", help="Verify every backup.")] = False,
        home: Annotated[
            Path | None,
            typer.Option(
                "--home",
                envvar="ARCHIVE_HOME",
                help="Also open the bundle with this home's keyring (asks its passphrase).",
                show_default=False,
            ),
        ] = None,
        deep: Annotated[
            bool, typer.Option("--deep", help="With --home: decrypt every stored file too.")
        ] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Check hashes of every object (and with --home the encrypted bundle); exit 1 on
        any problem."""
        from archive.backup import resolve, verify_backup
        from archive.backup.snapshot import snapshot_ids
        from archive.vault import open_keyring_for_cli

        try:
            ring = open_keyring_for_cli(load(home)) if home is not None else None
            store, chosen = resolve(dest, backup_id)
            ids = snapshot_ids(store) if all_ else [chosen]
            results = [
                verify_backup(store, i, ring, deep=deep, progress=progress_printer(not as_json))
                for i in ids
            ]
        except ArchiveError as exc:
            fail(str(exc))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            fail(_damaged(dest, exc))
        ok = all(r.ok for r in results)
        if home is not None:  # the bundle was opened with this home's keys: on its record
            try:
                audit_log_for(load(home).home).append(
                    AuditEvent(
                        "backup.verify",
                        "success" if ok else "failure",
                        actor=actor(),
                        source="cli",
                        detail={"backups": len(results), "deep": deep},
                    )  # fmt: skip
                )
            except AuditError as exc:
                fail(f"the verification ran but could not be audited: {exc}")
        if as_json:
            emit_json({"ok": ok, "backups": [r.as_dict() for r in results]})
        else:
            for r in results:
                state = "OK" if r.ok else "DAMAGED"
                extra = "" if r.bundle_checked else " (bundle not opened: give --home)"
                typer.echo(f"backup {r.id} {state}: {r.files_checked} files checked{extra}")
                for problem in r.problems:
                    typer.echo(f"problem: {problem}")
        if not ok:
            raise typer.Exit(1)

    @sub.command("restore")
    def restore_cmd(
        backup: Annotated[Path, typer.Argument(help="A backup destination (or one snapshot).")],
        keyring_backup: Annotated[
            Path, typer.Option("--keyring-backup", help="The keyring backup file.")
        ],
        home: HomeOption,
        backup_id: Annotated[
            str | None, typer.Option("--id", help="Which backup (default: the latest).")
        ] = None,
        http_port: Annotated[
            int | None, typer.Option("--http-port", help="HTTP port (default: the backup's).")
        ] = None,
        dicom_port: Annotated[
            int | None, typer.Option("--dicom-port", help="DICOM port (default: the backup's).")
        ] = None,
        recovery_file: Annotated[
            Path | None,
            typer.Option(
                "--recovery-passphrase-file",
                help="0600 file with the keyring backup's recovery passphrase (else asked).",
            ),
        ] = None,
        passphrase_file: Annotated[
            Path | None,
            typer.Option(
                "--passphrase-file",
                help="0600 file with the NEW home's keyring passphrase (else "
                "$ARCHIVE_KEYRING_PASSPHRASE_FILE, else asked).",
            ),
        ] = None,
        database: Annotated[
            str | None,
            typer.Option(
                "--database",
                help="Archive on PostgreSQL: the EMPTY database to load the backup into "
                "(default: the one the backup's archive.toml names; never overwritten).",
            ),
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Bring the archive back into a new, empty home from a backup plus the keyring
        backup, then read every stored file back against Orthanc's index."""
        from archive.backup import restore_backup

        try:
            recovery = _recovery(recovery_file)
            new_passphrase = _new_passphrase(passphrase_file)
            result = restore_backup(
                backup,
                keyring_backup,
                recovery,
                home,
                new_passphrase,
                backup_id=backup_id,
                http_port=http_port,
                dicom_port=dicom_port,
                actor=actor(),
                progress=progress_printer(not as_json),
                database=database,
            )
        except ArchiveError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"restore failed ({exc.strerror}: {exc.filename}); the new home was removed.")
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            fail(_damaged(backup, exc))
        if as_json:
            emit_json(result.as_dict())
        else:
            typer.echo(
                f"Restored backup {result.backup_id} into {result.home}: {result.files} files, "
                f"{result.instances_checked} attachments read back OK; HTTP port "
                f"{result.http_port}, DICOM port {result.dicom_port}."
            )
            typer.echo(f"Next: archive audit verify --home {result.home}; archive serve ...")

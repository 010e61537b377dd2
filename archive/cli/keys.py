"""`archive keys init|status|rotate|backup|verify|restore`: the keyring of an archive home."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import typer

from archive.cli.common import HomeOption, JsonOption, emit_json, fail, load
from archive.config import ArchiveConfig
from archive.errors import ArchiveError
from archive.vault import (
    EncryptedStore,
    Keyring,
    backup_keyring,
    key_usage,
    keyring_path,
    known_backup_locations,
    obtain_passphrase,
    open_keyring_for_cli,
    restore_keyring,
    rotate_and_rewrap,
    verify_backup,
)
from archive.vault.passphrase import prompt_passphrase, read_passphrase_file

RecoveryFileOption = Annotated[
    Path | None,
    typer.Option(
        "--recovery-passphrase-file",
        help="A 0600 file holding the recovery passphrase (else it is asked for).",
        show_default=False,
    ),
]


def _stores(config: ArchiveConfig, keyring: Keyring) -> list[EncryptedStore]:
    """Every encrypted store of the home: all must be rewrapped before a key retires."""
    from archive.governance.sharing.delivery import undertakings_dir  # signed undertakings
    from archive.vault.dbstore import storage_for  # noqa: PLC0415

    home = config.home
    storage = storage_for(config, keyring)
    shared = [storage] if storage.root is None or storage.root.is_dir() else []
    return shared + [
        EncryptedStore(directory, keyring)
        for directory in (home.quarantine_dir, undertakings_dir(home.data_dir))
        if directory.is_dir()
    ]


def _recovery(path: Path | None, *, confirm: bool) -> str:
    if path is not None:
        return read_passphrase_file(path, "recovery passphrase file")
    return prompt_passphrase("Recovery passphrase: ", confirm=confirm)


def _server_pid(config: ArchiveConfig) -> int | None:
    try:
        from archive.serve.server import HomeLock  # noqa: PLC0415 - platform room, optional
    except ImportError:
        return None
    try:
        return HomeLock.holder(config.home.lock_file)
    except OSError:
        return None


def _pin_audit_key(config: ArchiveConfig, ring: Keyring) -> None:
    """Pin the keyring's audit public key in HOME/keys, outside the log and the data
    directory (archive/audit/FORMAT.md section 2); nothing is written in data/ (it may
    not be the mounted volume yet)."""
    from archive.audit import pin_public_key  # noqa: PLC0415

    pin_public_key(config.home.keys_dir, ring.audit_public_key_bytes)


def _fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="The keyring: init, status, rotation, backups.", no_args_is_help=True)
    app.add_typer(sub, name="keys")

    @sub.command("init")
    def init_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """Create the keyring of a home (asks for a new passphrase unless configured)."""
        config = load(home)
        path = keyring_path(config.home.keys_dir)
        try:
            if path.exists():
                fail(f"a keyring already exists at {path}; use archive keys rotate.")
            ring = Keyring.create(path, obtain_passphrase(config, prompt=True, confirm=True))
            _pin_audit_key(config, ring)
        except ArchiveError as exc:
            fail(str(exc))
        result = {"keyring": str(path), "primary_kek_id": ring.primary_kek_id}
        if as_json:
            emit_json(result)
        else:
            typer.echo(f"Keyring created at {path} (primary key {ring.primary_kek_id}).")
            typer.echo("Next: archive keys backup --home ... --to <removable media>.")

    @sub.command("status")
    def status_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """Show keys (ids and dates only), what the stored files use, and known backups."""
        config = load(home)
        try:
            ring = open_keyring_for_cli(config)
            usage = key_usage(_stores(config, ring))
            backups = known_backup_locations(ring.keys_dir)
        except ArchiveError as exc:
            fail(str(exc))
        report = {
            "keyring": str(ring.path),
            "primary_kek_id": ring.primary_kek_id,
            "keks": [
                {"id": k, "created": ring.kek_created(k), "files": usage.get(k, 0)}
                for k in ring.kek_ids()
            ],
            "retired": ring.retired_ids(),
            "rotation_pending": ring.rotation_pending,
            "unreadable_headers": usage.get("<unreadable>", 0),
            "files_naming_unknown_keys": sum(
                n for k, n in usage.items() if k != "<unreadable>" and k not in ring.kek_ids()
            ),
            "pseudonym_key_fingerprint": _fingerprint(ring.pseudonym_key),
            "audit_public_key": ring.audit_public_key_bytes.hex(),
            "backups": [{"path": str(p), "exists": p.exists()} for p in backups],
        }
        if as_json:
            emit_json(report)
            return
        typer.echo(f"keyring: {report['keyring']}")
        typer.echo(f"primary key: {ring.primary_kek_id}")
        for kek in report["keks"]:
            typer.echo(f"  key {kek['id']}  created {kek['created']}  files {kek['files']}")
        for key_id, when in ring.retired_ids().items():
            typer.echo(f"  retired {key_id}  on {when}")
        if ring.rotation_pending:
            typer.echo("rotation: unfinished; run archive keys rotate to resume it")
        if report["unreadable_headers"] or report["files_naming_unknown_keys"]:
            typer.echo(
                f"WARNING: {report['unreadable_headers']} unreadable headers, "
                f"{report['files_naming_unknown_keys']} files naming unknown keys"
            )
        typer.echo(f"audit public key: {report['audit_public_key']}")
        typer.echo(f"backups recorded: {len(backups)}")
        for entry in report["backups"]:
            typer.echo(f"  {entry['path']}{'' if entry['exists'] else '  (gone)'}")

    @sub.command("rotate")
    def rotate_cmd(
        home: HomeOption,
        as_json: JsonOption = False,
        no_retire: Annotated[
            bool, typer.Option("--no-retire", help="Keep old keys even when unused.")
        ] = False,
    ) -> None:
        """Make a new primary key and rewrap every stored file's header (bodies untouched).

        Old keys are retired once no file names them. Safe to rerun after a crash."""
        config = load(home)
        running = _server_pid(config)
        retire = not no_retire and running is None
        try:
            ring = open_keyring_for_cli(config)
            stores = _stores(config, ring)
            if as_json:
                report = rotate_and_rewrap(ring, stores, retire=retire)
            else:

                def progress(done: int, total: int, _path: Path) -> None:
                    if done == total or done % max(1, total // 20) == 0:
                        typer.echo(f"rewrapped {done}/{total}", err=True)

                report = rotate_and_rewrap(ring, stores, progress, retire=retire)
        except ArchiveError as exc:
            fail(str(exc))
        try:  # the audit key is not rotated: keep it pinned (pins it on older homes)
            _pin_audit_key(config, ring)
        except ArchiveError as exc:
            fail(str(exc))
        result = report.as_dict()
        result["server_running"] = running is not None
        if as_json:
            emit_json(result)
        else:
            typer.echo(
                f"new primary key {report.new_primary}{' (resumed)' if report.resumed else ''}: "
                f"{report.rewrapped} rewrapped, {report.already_current} already current"
            )
            if report.retired:
                typer.echo(f"retired: {', '.join(report.retired)}")
            if running is not None:
                typer.echo(
                    f"The archive is running (pid {running}) with the old keys loaded; no key "
                    f"was retired. Restart it, then run archive keys rotate again to retire."
                )
            if report.failures:
                typer.echo(f"{len(report.failures)} files failed; old keys kept:", err=True)
                for path, reason in list(report.failures.items())[:20]:
                    typer.echo(f"  {path}: {reason}", err=True)
        if report.failures:
            raise typer.Exit(1)

    @sub.command("backup")
    def backup_cmd(
        home: HomeOption,
        to: Annotated[
            Path, typer.Option("--to", help="Backup file or directory (e.g. removable media).")
        ],
        recovery_file: RecoveryFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Write a keyring backup sealed under a separate recovery passphrase."""
        config = load(home)
        try:
            passphrase = obtain_passphrase(config, prompt=True)
            ring = Keyring.open(keyring_path(config.home.keys_dir), passphrase)
            recovery = _recovery(recovery_file, confirm=True)
            dest = backup_keyring(ring, to, recovery, passphrase=passphrase)
            info = verify_backup(dest, recovery, ring)
        except ArchiveError as exc:
            fail(str(exc))
        if as_json:
            emit_json(info.as_dict())
        else:
            typer.echo(f"Backup written and verified: {dest}")
            typer.echo("Keep the recovery passphrase apart from the backup.")

    @sub.command("verify")
    def verify_cmd(
        home: HomeOption,
        backup: Annotated[
            Path | None, typer.Option("--backup", help="Check this backup against the keyring.")
        ] = None,
        recovery_file: RecoveryFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Check the keyring opens and every stored file names a live key; with --backup,
        check the backup opens and holds every live key."""
        config = load(home)
        try:
            ring = open_keyring_for_cli(config)
            if backup is not None:
                info = verify_backup(backup, _recovery(recovery_file, confirm=False), ring)
                result: dict[str, object] = {"ok": bool(info.covers_current), **info.as_dict()}
            else:
                usage = key_usage(_stores(config, ring))
                live = set(ring.kek_ids())
                bad = {k: n for k, n in usage.items() if k not in live}
                result = {"ok": not bad, "files_by_key": dict(usage), "problems": bad}
        except ArchiveError as exc:
            fail(str(exc))
        if as_json:
            emit_json(result)
        elif result["ok"]:
            typer.echo(
                "OK: "
                + (
                    "backup holds every live key"
                    if backup
                    else "every stored file names a live key"
                )
            )
        else:
            typer.echo(f"PROBLEM: {result}", err=True)
        if not result["ok"]:
            raise typer.Exit(1)

    @sub.command("restore")
    def restore_cmd(
        home: HomeOption,
        backup: Annotated[Path, typer.Option("--backup", help="The keyring backup file.")],
        recovery_file: RecoveryFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Recreate HOME/keys/keyring.json from a backup, under the configured passphrase."""
        config = load(home)
        dest = keyring_path(config.home.keys_dir)
        try:
            recovery = _recovery(recovery_file, confirm=False)
            ring = restore_keyring(
                backup, recovery, dest, obtain_passphrase(config, prompt=True, confirm=True)
            )
        except ArchiveError as exc:
            fail(str(exc))
        if as_json:
            emit_json({"keyring": str(dest), "kek_ids": ring.kek_ids()})
        else:
            typer.echo(f"Keyring restored to {dest} ({len(ring.kek_ids())} keys).")

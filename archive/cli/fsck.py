"""`archive fsck`: check that catalogue, Orthanc's index, stored files and audit agree."""

from __future__ import annotations

from typing import Annotated

import typer

from archive.audit import AuditError, AuditEvent, audit_log_for
from archive.cli.backup import hold_stopped_home, progress_printer
from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail, load
from archive.errors import ArchiveError


def fsck(
    home: HomeOption,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Remove crash leftovers and MOVE orphaned files to data/lost+found "
            "(never deletes stored data).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check a stopped archive: every catalogue case has its instances in Orthanc's index,
    every stored file decrypts and matches the index, nothing is orphaned or half-written,
    the audit log verifies. Exit 1 while a problem remains."""
    from archive.fsck import check_home
    from archive.vault import open_keyring_for_cli

    config = load(home)
    lock = hold_stopped_home(config)
    try:
        ring = open_keyring_for_cli(config)
        report = check_home(config, ring, repair=repair, progress=progress_printer(not as_json))
        _audit_repairs(config, report, ring)
    except ArchiveError as exc:
        fail(str(exc))
    finally:
        lock.release()
    if as_json:
        emit_json(report.as_dict())
    else:
        checked = ", ".join(f"{v} {k}" for k, v in report.checked.items())
        typer.echo(f"fsck {'CLEAN' if report.ok else 'PROBLEMS'}: checked {checked}")
        for f in report.findings:
            state = "repaired" if f.repaired else ("repairable" if f.repairable else "")
            typer.echo(f"{f.kind}: {f.target}: {f.detail}" + (f" [{state}]" if state else ""))
        if report.lost_and_found:
            typer.echo(f"moved (still encrypted) to {report.lost_and_found}")
        if not repair and any(f.repairable and not f.repaired for f in report.findings):
            typer.echo("Run again with --repair to clean up what is marked repairable.")
    if not report.ok:
        raise typer.Exit(1)


def _audit_repairs(config, report, ring=None) -> None:
    """Files were moved or rewritten: say so in the audit log (a damaged log, which fsck
    reports and never repairs, may refuse the record; the report still prints)."""
    repaired = sum(f.repaired for f in report.findings)
    if not repaired:
        return
    event = AuditEvent(
        "fsck.repair",
        "success" if report.ok else "failure",
        actor(),
        source="cli",
        detail={"repaired": repaired, "remaining": len(report.findings) - repaired},
    )
    try:
        signer = getattr(ring, "audit_signing_key", None)
        audit_log_for(config.home, signer=signer).append(event)
    except AuditError as exc:
        typer.echo(f"warning: the repairs are not in the audit log: {exc}", err=True)


def register(app: typer.Typer) -> None:
    app.command("fsck")(fsck)

"""`archive audit verify|show|checkpoint`: check and read the tamper-evident log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from archive.audit import (
    AuditError,
    AuditEvent,
    audit_log_for,
    audit_source,
    pin_public_key,
    query,
    to_csv,
    to_json,
    verify_home,
)
from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail, load
from archive.config import ArchiveConfig
from archive.errors import ArchiveError


def _open_keyring(config: ArchiveConfig) -> Any:
    """The vault's keyring (asks for the passphrase); fails if the vault cannot provide it."""
    try:
        from archive import vault  # optional room, loaded on demand
    except ImportError:
        fail("no keyring support in this installation; run verify without --keyring.")
    opener = getattr(vault, "open_keyring_for_cli", None)
    if opener is None:
        fail("no keyring support in this installation; run verify without --keyring.")
    try:
        return opener(config)
    except ArchiveError as exc:
        fail(str(exc))


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Verify and read the tamper-evident audit log.", no_args_is_help=True)
    app.add_typer(sub, name="audit")

    @sub.command("verify")
    def verify_cmd(
        home: HomeOption,
        keyring: Annotated[
            bool,
            typer.Option(
                "--keyring",
                help="Check signatures with the keyring's key (asks for the passphrase) "
                "instead of the key pinned in HOME/keys; pins it if nothing is pinned yet.",
            ),
        ] = False,
        public_key: Annotated[
            Path | None,
            typer.Option(
                "--public-key",
                help="A file with the hex Ed25519 public key(s) held outside this machine "
                "(an off-site copy: archive keys status prints the key).",
            ),
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Check every record, signature, link, checkpoint, the head and the database anchor
        against the pinned key; exit 1 and say where if not (archive/audit/FORMAT.md)."""
        config = load(home)
        key: list[bytes] | None = None
        try:
            if keyring:
                raw = bytes(_open_keyring(config).audit_public_key_bytes)
                pin_public_key(config.home.keys_dir, raw)
                key = [raw]
            elif public_key is not None:
                try:
                    key = [bytes.fromhex(w) for w in public_key.read_text("ascii").split()]
                except (OSError, ValueError, UnicodeDecodeError):
                    key = []
                if not key or any(len(k) != 32 for k in key):
                    fail(f"{public_key} does not hold a hex Ed25519 public key.")
            report = verify_home(config.home, key)
        except AuditError as exc:
            fail(str(exc))
        if as_json:
            emit_json(report.as_dict())
        else:
            state = "OK" if report.ok else "TAMPERED OR DAMAGED"
            typer.echo(
                f"audit log {state}: {report.records} records, last seq {report.last_seq}, "
                f"{report.checkpoints} signed checkpoints"
            )
            for problem in report.problems:
                typer.echo(f"problem: {problem}")
            for note in report.notes:
                typer.echo(f"note: {note}")
        if not report.ok:
            first = report.problems[0] if report.problems else "see above"
            typer.echo(
                f"error: audit log failed verification: {first}. Keep this home as it is "
                "and restore data/audit and the database from a verified backup "
                "(archive backup verify, archive backup restore).",
                err=True,
            )
            raise typer.Exit(1)

    @sub.command("show")
    def show_cmd(
        home: HomeOption,
        user: Annotated[str | None, typer.Option("--user", help="Only this actor.")] = None,
        case: Annotated[
            str | None, typer.Option("--case", help="Only this case id / study UID.")
        ] = None,
        action: Annotated[
            str | None,
            typer.Option("--action", help="Action name or prefix, e.g. auth or auth.login."),
        ] = None,
        outcome: Annotated[
            str | None, typer.Option("--outcome", help="success, denied or failure.")
        ] = None,
        since: Annotated[
            str | None, typer.Option("--since", help="From this time (ISO 8601), inclusive.")
        ] = None,
        until: Annotated[
            str | None, typer.Option("--until", help="Before this time (ISO 8601).")
        ] = None,
        limit: Annotated[
            int, typer.Option("--limit", help="Only the last N matches (0 = all).")
        ] = 0,
        as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
        as_json: JsonOption = False,
    ) -> None:
        """List audit records matching the filters (does not verify; see `audit verify`)."""
        config = load(home)
        try:
            rows = query(
                audit_source(config.home),
                user=user,
                case=case,
                action=action,
                since=since,
                until=until,
                outcome=outcome,
            )
        except AuditError as exc:
            fail(str(exc))
        if limit > 0:
            rows = rows[-limit:]
        if as_csv:
            typer.echo(to_csv(rows), nl=False)
        elif as_json:
            typer.echo(to_json(rows))
        else:
            for r in rows:
                roles = ",".join(r.get("roles") or []) or "-"
                detail = " ".join(f"{k}={v}" for k, v in sorted((r.get("detail") or {}).items()))
                typer.echo(
                    f"{r['seq']:>6} {r['timestamp']} {r['action']:<20} {r['outcome']:<7} "
                    f"{r['actor']} [{roles}] from {r['source']} "
                    f"target={r.get('target') or '-'} {detail}".rstrip()
                )

    @sub.command("checkpoint")
    def checkpoint_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """Sign a checkpoint now with the keyring's audit key (asks for the passphrase)."""
        config = load(home)
        ring = _open_keyring(config)
        try:
            log = audit_log_for(config.home, signer=ring.audit_signing_key)
            seq = log.checkpoint(ring.audit_signing_key)
            log.append(AuditEvent("audit.checkpoint_requested", "success", actor(), source="cli"))
        except AuditError as exc:
            fail(str(exc))
        if as_json:
            emit_json({"checkpoint_seq": seq})
        else:
            typer.echo(f"signed checkpoint at seq {seq}")

"""`archive removals request|list|show|approve|refuse|export`: written approval first.

Every command goes through the running archive's REST API as a named user (like
`archive pull`), so the rules of archive.governance.removals, the HTTP access policy
and the audit log apply the same way on every path. Only the Head of School or a TPD
who is not the requester approves; export writes the age-encrypted package to a file.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from archive.cli.common import HomeOption, JsonOption, emit_json, fail
from archive.cli.pull import AsOption, PasswordFileOption, TokenFileOption, api_client, call


def _show_line(item: dict) -> str:
    return (
        f"{item['id']:>5} {item['status']:<9} {item['purpose']:<24} "
        f"{','.join(item['case_ids'])}  by {item['requester']}"
    )


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Removal requests and written approvals.", no_args_is_help=True)
    app.add_typer(sub, name="removals")

    @sub.command("request")
    def request_cmd(
        cases: Annotated[list[str], typer.Argument(help="Case ids to remove from the suite.")],
        home: HomeOption,
        purpose: Annotated[
            str,
            typer.Option(
                "--purpose",
                help="teaching_materials, publication_journal, publication_book_chapter "
                "or publication_elearning.",
            ),
        ],
        destination: Annotated[str, typer.Option("--destination", help="Where they go.")],
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Ask for written permission to take cases out of the suite."""
        body = {"cases": cases, "purpose": purpose, "destination": destination}
        with api_client(home, user, password_file, token_file) as client:
            made = call(client, "POST", "/teaching/removals", json=body)
        if as_json:
            emit_json(made)
        else:
            typer.echo(f"removal request {made['id']} recorded: pending approval")

    @sub.command("list")
    def list_cmd(
        home: HomeOption,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """All removal requests with their status (expired approvals read as expired)."""
        with api_client(home, user, password_file, token_file) as client:
            rows = call(client, "GET", "/teaching/removals")["removals"]
        if as_json:
            emit_json(rows)
            return
        for item in rows:
            typer.echo(_show_line(item))

    @sub.command("show")
    def show_cmd(
        request_id: Annotated[int, typer.Argument(help="The request's number.")],
        home: HomeOption,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """One request with its approval or refusal and downloads."""
        with api_client(home, user, password_file, token_file) as client:
            item = call(client, "GET", f"/teaching/removals/{request_id}")
        if as_json:
            emit_json(item)
            return
        typer.echo(_show_line(item))
        typer.echo(f"  destination: {item['destination']}")
        if item.get("approval"):
            a = item["approval"]
            typer.echo(
                f"  approved {a['reference']} by {a['approver']} ({a['approver_role']}) "
                f"on {a['approved_at']}, expires {a['expires_at']}, "
                f"downloads {a['downloads_used']}/{a['max_downloads']}"
            )
            typer.echo(f"  text: {a['text']}")
        if item.get("refusal"):
            r = item["refusal"]
            typer.echo(f"  refused by {r['approver']} ({r['approver_role']}): {r['reason']}")

    @sub.command("approve")
    def approve_cmd(
        request_id: Annotated[int, typer.Argument(help="The request's number.")],
        home: HomeOption,
        text: Annotated[str, typer.Option("--text", help="The written permission.")],
        days: Annotated[
            int | None, typer.Option("--days", help="Valid for this many days (policy default).")
        ] = None,
        downloads: Annotated[
            int | None, typer.Option("--downloads", help="Downloads allowed (policy default).")
        ] = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Give written permission (Head of School or TPD, never the requester)."""
        body: dict = {"text": text}
        if days is not None:
            body["expires_at"] = (datetime.now(UTC) + timedelta(days=days)).isoformat()
        if downloads is not None:
            body["max_downloads"] = downloads
        with api_client(home, user, password_file, token_file) as client:
            item = call(client, "POST", f"/teaching/removals/{request_id}/approve", json=body)
        if as_json:
            emit_json(item)
        else:
            a = item["approval"]
            typer.echo(f"approved as {a['reference']}, expires {a['expires_at']}")

    @sub.command("refuse")
    def refuse_cmd(
        request_id: Annotated[int, typer.Argument(help="The request's number.")],
        home: HomeOption,
        reason: Annotated[str, typer.Option("--reason", help="Why it is refused.")],
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Refuse a request, recording the reason."""
        with api_client(home, user, password_file, token_file) as client:
            item = call(
                client, "POST", f"/teaching/removals/{request_id}/refuse", json={"reason": reason}
            )
        if as_json:
            emit_json(item)
        else:
            typer.echo(f"removal request {request_id} refused")

    @sub.command("export")
    def export_cmd(
        request_id: Annotated[int, typer.Argument(help="The approved request's number.")],
        home: HomeOption,
        output: Annotated[Path, typer.Option("--output", "-o", help="The .age file to write.")],
        recipient: Annotated[
            str | None, typer.Option("--recipient", help="An age public key (age1...).")
        ] = None,
        passphrase_file: Annotated[
            Path | None,
            typer.Option("--passphrase-file", help="Encrypt to the passphrase on its first line."),
        ] = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
    ) -> None:
        """Download the encrypted package of an approved request (spends one download)."""
        if (recipient is None) == (passphrase_file is None):
            fail("give --recipient or --passphrase-file (exactly one).")
        if output.exists():
            fail(f"{output} exists; choose a new file name.")
        headers, params = {}, {}
        if passphrase_file is not None:
            lines = passphrase_file.read_text(encoding="utf-8").splitlines()
            if not lines or not lines[0]:
                fail(f"the passphrase file {passphrase_file} is empty.")
            headers["X-Export-Passphrase"] = lines[0]
        else:
            params["recipient"] = recipient
        with api_client(home, user, password_file, token_file) as client:
            package = call(
                client,
                "GET",
                f"/teaching/removals/{request_id}/download",
                headers=headers,
                params=params,
            )
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(package)
        typer.echo(f"wrote {output} ({len(package)} bytes, age-encrypted)")

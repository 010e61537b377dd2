"""`archive removals request|list|show|approve|refuse|export`: written approval first.

Every command goes through the running archive's REST API as a named user (like
`archive pull`), so the rules of archive.governance.removals.records, the HTTP access policy
and the audit log apply the same way on every path. Only the Head of School or a TPD
who is not the requester approves; export writes the age-encrypted package to a file.

The package file appears whole or not at all: it is streamed to a hidden
`.NAME.PID.partial` beside the output, checked against the announced length, fsynced,
then moved into place without overwriting anything (and the directory fsynced). A
download cut off (the archive stopped, the network broke) leaves no file; one left by a
CLI that was itself killed is removed by the next export to the same output.
"""

from __future__ import annotations

import errno
import glob
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import httpx
import typer

from archive.cli.api import (
    AsOption,
    PasswordFileOption,
    TokenFileOption,
    api_client,
    call,
    first_line,
)
from archive.cli.common import HomeOption, JsonOption, emit_json, fail

PARTIAL_SUFFIX = ".partial"


def partial_path(output: Path, pid: int | None = None) -> Path:
    """Where this process streams the package to before it becomes `output`."""
    return output.with_name(f".{output.name}.{os.getpid() if pid is None else pid}{PARTIAL_SUFFIX}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_partials(output: Path) -> list[Path]:
    """Remove partial downloads to `output` whose writer is gone; returns what was removed."""
    removed = []
    pattern = f".{glob.escape(output.name)}.*{PARTIAL_SUFFIX}"
    for path in output.parent.glob(pattern):
        pid = path.name[len(output.name) + 2 : -len(PARTIAL_SUFFIX)]
        if not pid.isdigit():
            continue  # another output's partial (".NAME.x.PID.partial"): not ours
        if int(pid) != os.getpid() and _alive(int(pid)):
            continue  # another export to the same name is still running
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(temp: Path, output: Path) -> None:
    """Move the finished temp file to `output`, never replacing an existing file."""
    try:
        os.link(temp, output)  # atomic and refuses an existing name
    except FileExistsError:
        fail(f"{output} appeared meanwhile; the package was not written. Choose a new name.")
    except OSError as exc:  # no hard links (e.g. a FAT drive): rename after a re-check
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
            fail(f"cannot write {output}: {exc.strerror}; nothing was written.")
        if output.exists():
            fail(f"{output} appeared meanwhile; the package was not written.")
        os.rename(temp, output)
    else:
        temp.unlink()
    try:
        _fsync_dir(output.parent)
    except OSError:
        pass  # some drives cannot fsync a directory; the file itself is fsynced


def _refusal(answer: httpx.Response) -> str:
    if answer.status_code == 401:
        return "the archive refused the credentials; check the user name and password/token."
    try:
        message = answer.json().get("error") or answer.text
    except ValueError:
        message = answer.text.strip()
    return message or f"the archive answered HTTP {answer.status_code}."


def download_package(
    client: httpx.Client, path: str, output: Path, request_id: int, **kwargs
) -> int:
    """Stream GET `path` into `output` atomically; returns its size. Fails with one line
    (and leaves no file) if the archive refuses or the transfer breaks off."""
    clean_stale_partials(output)
    temp = partial_path(output)
    done = False
    cut_off = (
        f"the download of removal request {request_id} broke off (the archive stopped "
        f"answering); nothing was written to {output}. A download the archive counted "
        f"stays counted: see `archive removals show {request_id}` and export again if "
        "downloads remain."
    )
    # Where the package goes is checked before asking: the archive counts a download as
    # soon as it starts building, so an unwritable or taken output must not spend one.
    if output.exists():
        fail(f"{output} already exists; choose another --output (nothing was exported).")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}; nothing was exported.")
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                with client.stream("GET", path, **kwargs) as answer:
                    if answer.status_code >= 400:
                        answer.read()
                        fail(_refusal(answer))
                    announced = answer.headers.get("content-length")
                    size = 0
                    for chunk in answer.iter_bytes():
                        handle.write(chunk)
                        size += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        except httpx.HTTPError:
            fail(cut_off)
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror}; nothing was written.")
        if announced is not None and int(announced) != size:
            fail(cut_off)
        _publish(temp, output)
        done = True
        return size
    finally:
        if not done:
            temp.unlink(missing_ok=True)


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
            headers["X-Export-Passphrase"] = first_line(passphrase_file, "passphrase")
        else:
            params["recipient"] = recipient
        with api_client(home, user, password_file, token_file) as client:
            size = download_package(
                client,
                f"/teaching/removals/{request_id}/download",
                output,
                request_id,
                headers=headers,
                params=params,
            )
        typer.echo(f"wrote {output} ({size} bytes, age-encrypted)")

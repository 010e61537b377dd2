"""The CLI's client for the running archive's REST API, acting as a named user.

Commands that need Orthanc to act (pulls, removals, shares, closure, withdrawal) go
through the REST API rather than the home, so the same checks and audit apply whichever
way an action is asked for. The user authenticates with an API token file (--token-file
or ARCHIVE_TOKEN_FILE) or a password file (--password-file or ARCHIVE_PASSWORD_FILE), or
a prompt on a terminal; a password is never taken from the command line.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from archive import server
from archive.cli.common import actor, fail, load, stdin_is_tty

AsOption = Annotated[
    str | None, typer.Option("--as", help="The named archive user to act as (default: $USER).")
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file", envvar="ARCHIVE_PASSWORD_FILE", help="The user's password, first line."
    ),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option("--token-file", envvar="ARCHIVE_TOKEN_FILE", help="An API token, first line."),
]


def first_line(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        fail(f"cannot read the {what} file {path}: {exc.strerror}.")
    if not text or not text[0]:
        fail(f"the {what} file {path} is empty.")
    return text[0]


def api_client(
    home: Path, user: str | None, password_file: Path | None, token_file: Path | None
) -> httpx.Client:
    """An HTTP client for the running archive of `home`, authenticated as a named user."""
    config = load(home)
    headers: dict[str, str] = {}
    auth = None
    if token_file is not None:
        headers["Authorization"] = "Bearer " + first_line(token_file, "token")
    else:
        name = user or actor()
        if password_file is not None:
            password = first_line(password_file, "password")
        elif stdin_is_tty():
            password = getpass.getpass(f"password for {name}: ")
        else:
            fail("give --password-file or --token-file to authenticate to the archive.")
        auth = (name, password)
    # The archive's own URL on this host (loopback, self-signed when TLS is on), as
    # `archive status` reads it.
    return httpx.Client(
        base_url=server.base_url(config),
        auth=auth,
        headers=headers,
        timeout=600,
        verify=False,  # noqa: S501
    )


def call(client: httpx.Client, method: str, path: str, **kwargs) -> Any:
    """One REST call; any refusal becomes the archive's one-line message."""
    try:
        answer = client.request(method, path, **kwargs)
    except httpx.HTTPError:
        fail(f"the archive at {client.base_url} is not answering; start it with archive serve.")
    if answer.status_code == 401:
        fail("the archive refused the credentials; check the user name and password/token.")
    if answer.status_code >= 400:
        try:
            message = answer.json().get("error") or answer.text
        except ValueError:
            message = answer.text.strip() or f"HTTP {answer.status_code}"
        if answer.status_code == 403 and not message:
            message = "not allowed for this user (role or training)."
        fail(message or f"the archive answered HTTP {answer.status_code}.")
    if answer.headers.get("content-type", "").startswith("application/json"):
        return answer.json()
    return answer.content

"""How the CLI acts for a person: always as that person, authenticated (issue 21).

Every command that records a person's decision is made with that person's own
credentials: an API token file (--token-file or ARCHIVE_TOKEN_FILE), a password file
(--password-file or ARCHIVE_PASSWORD_FILE), or a password prompt on a terminal; a
password is never taken from the command line, and nobody is named on the operator's
word. Two ways, one rule:

- where the archive has a REST route for the act (pulls, removals, shares, quarantine
  release, closure transfer, withdrawal), the CLI calls it over REST with those
  credentials (`api_client` + `call`), so the route's checks and audit apply;
- where it has none (closure decisions and votes, quarantine mask and reject, case
  editing, user administration), the CLI checks the same credentials against the
  home's account store with the HTTP filter's own code (`authenticate_headers`) and
  acts as that principal (`authenticated_person`).

A refusal is one line with the reason and what to do next.
"""

from __future__ import annotations

import base64
import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from archive.cli.common import actor, fail, load, stdin_is_tty
from archive.serve import server

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


FLAGS = ("--password-file", "--token-file")


def authorization(
    user: str | None,
    password_file: Path | None,
    token_file: Path | None,
    flags: tuple[str, str] = FLAGS,
) -> str:
    """The person's own `Authorization` header value: their token, or their name and
    password (file or prompt). Never a name alone."""
    if token_file is not None:
        return "Bearer " + first_line(token_file, "token")
    name = user or actor()
    if password_file is not None:
        password = first_line(password_file, "password")
    elif stdin_is_tty():
        password = getpass.getpass(f"password for {name}: ")
    else:
        fail(
            f"this act is recorded as {name}'s own: give {name}'s {flags[0]} or "
            f"{flags[1]} (or run it on a terminal to be asked for the password)."
        )
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


class ArchiveClient(httpx.Client):
    """An httpx client that remembers whose credentials it carries, to explain refusals."""

    archive_home: Path
    archive_user: str | None


def api_client(
    home: Path, user: str | None, password_file: Path | None, token_file: Path | None
) -> ArchiveClient:
    """An HTTP client for the running archive of `home`, authenticated as a named user."""
    config = load(home)
    headers = {"Authorization": authorization(user, password_file, token_file)}
    # The archive's own URL on this host (loopback, self-signed when TLS is on), as
    # `archive status` reads it.
    client = ArchiveClient(
        base_url=server.base_url(config),
        headers=headers,
        timeout=600,
        verify=False,  # noqa: S501
    )
    client.archive_home = home
    client.archive_user = None if token_file is not None else (user or actor())
    return client


# The HTTP filter can only answer Orthanc's bare 403; these say why it refused.
_FILTER_REASONS = {
    "bad_credentials": "the user name or password (or token) is wrong",
    "locked": "the account is locked after failed sign-ins; wait, or ask personnel",
    "disabled": "the account is disabled; ask school personnel",
    "account_expired": "the account has expired; ask school personnel to extend it",
    "token_expired": "the API token has expired; make a new one (`archive tokens create`)",
    "token_revoked": "the API token was revoked; make a new one (`archive tokens create`)",
    "malformed": "the credentials could not be read",
}


def explain_refusal(client: httpx.Client, method: str, path: str) -> str:
    """Why the archive's HTTP filter refused this request (it answers a bare 403), from
    the home's own account store and route policy, without checking a password again
    (that would count as a second failed sign-in)."""
    home = getattr(client, "archive_home", None)
    name = getattr(client, "archive_user", None)
    generic = (
        f"the archive refused {method} {path}: wrong credentials, or a role or training "
        "this route needs; see `archive users show NAME`."
    )
    if home is None or name is None:
        return generic
    try:
        from archive.access import decide, load_route_policy, open_access_store

        config = load(home)
        store = open_access_store(config, config.policies_dir)
        try:
            user = store.get_user(name)
            now = datetime.now(UTC)
            if user is None:
                return f"the archive refused the credentials: {_FILTER_REASONS['bad_credentials']}."
            state = store._account_state(user, now)  # noqa: SLF001 - same rule as sign-in
            if state is None and user.locked_until is not None and user.locked_until > now:
                state = "locked"
            if state is not None:
                return f"the archive refused {name}: {_FILTER_REASONS[state]}."
            principal = store.local_principal(name, now)
            decision = decide(load_route_policy(config.policies_dir), principal, method, path)
        finally:
            store.conn.close()
    except Exception:  # noqa: BLE001 - an explanation must never hide the refusal
        return generic
    if decision.allowed:
        return (
            f"the archive refused the credentials of {name}: {_FILTER_REASONS['bad_credentials']}."
        )
    roles = ", ".join(principal.roles) or "none"
    return (
        f"{name} may not {method} {path}: {decision.reason} (roles: {roles}); ask school "
        "personnel for the role or training, or have a person who holds it act themselves."
    )


def call(client: httpx.Client, method: str, path: str, **kwargs) -> Any:
    """One REST call; any refusal becomes one line: the archive's reason and next step."""
    try:
        answer = client.request(method, path, **kwargs)
    except httpx.HTTPError:
        fail(f"the archive at {client.base_url} is not answering; start it with archive serve.")
    if answer.status_code >= 400:
        try:
            body = answer.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("error"):
            message = str(body["error"]).rstrip()
            if body.get("next"):
                message = f"{message} Next: {body['next']}"
        elif answer.status_code in (401, 403):
            message = explain_refusal(client, method, path)
        else:
            message = (answer.text.strip() or "no reason given")[:300]
            message = f"the archive answered HTTP {answer.status_code}: {message}"
        fail(" ".join(message.split()))
    if answer.headers.get("content-type", "").startswith("application/json"):
        return answer.json()
    return answer.content


def authenticated_person(
    home: Path,
    store,
    user: str | None,
    password_file: Path | None,
    token_file: Path | None,
    *,
    record=None,
    flags: tuple[str, str] = FLAGS,
):
    """The person's Principal, from their own credentials checked against the home's
    account store with the HTTP filter's code; one line and exit when refused.
    `record(event)` audits a refused sign-in."""
    from archive.access import AuthFailure, auth_event, authenticate_headers

    header = authorization(user, password_file, token_file, flags)
    result = authenticate_headers(store, {"authorization": header}, datetime.now(UTC))
    if isinstance(result, AuthFailure):
        if record is not None:
            try:
                record(auth_event(result, "cli"))
            except Exception:  # noqa: BLE001, S110 - the refusal below stands anyway
                pass
        who = result.user or user or actor()
        why = _FILTER_REASONS.get(result.reason, result.reason)
        fail(f"{who} could not be authenticated: {why}. This act is recorded as the "
             "person's own, so it needs their own password or token.")  # fmt: skip
    return result


def done(result):
    """A use case's result, or its refusal as the CLI's one line: the reason, then what to
    do next (archive.core.Refusal)."""
    from archive.core import Refusal

    if isinstance(result, Refusal):
        reason = result.reason.rstrip(".")
        fail(f"{reason}. Next: {result.next}" if result.next else f"{reason}.")
    return result

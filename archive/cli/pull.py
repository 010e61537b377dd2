"""`archive pull CASE... --to WS`: send released cases to a suite workstation.

The CLI goes through the running archive's REST API as a named user
(archive/cli/api.py), so the same checks (training, released cases, registered
workstation), the pull inventory and the audit apply whichever way a pull is asked for.
"""

from __future__ import annotations

from typing import Annotated

import typer

from archive.cli.api import AsOption, PasswordFileOption, TokenFileOption, api_client, call
from archive.cli.common import HomeOption, JsonOption, emit_json


def pull(
    cases: Annotated[list[str], typer.Argument(help="Case ids to pull.")],
    home: HomeOption,
    to: Annotated[str, typer.Option("--to", help="The registered workstation's name.")],
    user: AsOption = None,
    password_file: PasswordFileOption = None,
    token_file: TokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send released cases to a suite workstation (trained users only); audited."""
    with api_client(home, user, password_file, token_file) as client:
        result = call(client, "POST", "/teaching/pulls", json={"cases": cases, "workstation": to})
    if as_json:
        emit_json(result)
        return
    for item in result["pulled"]:
        typer.echo(f"{item['case_id']}: {item['instances']} instance(s) sent to {to}")


def register(app: typer.Typer) -> None:
    app.command()(pull)

"""`archive tokens create|list|revoke`: API tokens for scripts and the web interface.

A token is its owner's own credential (issue 21): `create` is made by the user it acts
as, with their own password (prompt or --password-file), through the people use case
(token.create: owner only), so nobody mints a token to act in another person's name.
Revoking only takes access away and stays the operator's.
"""

from __future__ import annotations

from typing import Annotated

import typer

from archive.access import usecases as people
from archive.cli.api import PasswordFileOption
from archive.cli.common import HomeOption, JsonOption, emit_json, fail
from archive.cli.users import Acting, admin_act, audited, now, opened


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Bearer API tokens (hashed at rest).", no_args_is_help=True)
    app.add_typer(sub, name="tokens")

    @sub.command("create")
    def create_cmd(
        user: Annotated[str, typer.Argument(help="The user the token acts as.")],
        home: HomeOption,
        days: Annotated[
            int | None, typer.Option("--days", help="Lifetime in days (policy default).")
        ] = None,
        label: Annotated[str, typer.Option("--label", help="What the token is for.")] = "",
        password_file: PasswordFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Create your own token (your password) and print it ONCE; only its hash is kept."""
        from archive.cli.api import authenticated_person

        with opened(home) as (store, log):
            owner = authenticated_person(home, store, user, password_file, None,
                                         record=log.append)  # fmt: skip
            by = Acting(owner.user, tuple(owner.roles), False, owner)
            token_id, plaintext = admin_act(
                home, store, log, by,
                lambda room, me: people.create_token(room, me, user, days, label),
                "tokens.create", user, lambda: None,
            )  # fmt: skip
            info = next(t for t in store.list_tokens(user) if t.token_id == token_id)
        if as_json:
            emit_json({**info.as_dict(), "token": plaintext})
        else:
            typer.echo(f"token {token_id} for {user}, expires {info.expires_at}")
            typer.echo("copy it now, it is not shown again:")
            typer.echo(plaintext)

    @sub.command("list")
    def list_cmd(
        home: HomeOption,
        user: Annotated[str | None, typer.Option("--user", help="Only this user's.")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Tokens with expiry, revocation and last use (never the token itself)."""
        with opened(home) as (store, _):
            rows = [t.as_dict() for t in store.list_tokens(user)]
        if as_json:
            emit_json(rows)
            return
        for r in rows:
            state = "revoked" if r["revoked_at"] else f"expires {r['expires_at']}"
            typer.echo(
                f"{r['token_id']} {r['user']:<20} {state} last used "
                f"{r['last_used_at'] or 'never'} {r['label']}".rstrip()
            )

    @sub.command("revoke")
    def revoke_cmd(
        token_id: Annotated[str, typer.Argument(help="The token id from tokens list.")],
        home: HomeOption,
    ) -> None:
        """Revoke a token at once."""
        with opened(home) as (store, log):
            if not any(t.token_id == token_id for t in store.list_tokens()):
                fail(f"no token {token_id!r}; see archive tokens list.")
            audited(log, "tokens.revoke", token_id, lambda: store.revoke_token(token_id, now()))
        typer.echo(f"token {token_id} revoked")

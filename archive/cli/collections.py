"""`archive collections create|list|show|add|remove|reorder|share|delete`.

A collection (an exam-preparation set, a teaching session) has its own title and
description and keeps its cases in the order a trainer chose. Its owner (who created
it) changes it and may share editing with named users (`share`); others read it.
Changing a collection is a person's act: made as the person who authenticates (--as
NAME with a prompt or --password-file, or --token-file) through the catalogue's use
cases (archive.catalogue.usecases), which authorise and audit it; reading is the
operator's, on the archive's machine, as for `archive cases`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from archive.catalogue import Collection
from archive.catalogue import usecases as uc
from archive.cli.api import AsOption, PasswordFileOption, TokenFileOption
from archive.cli.cases import AsUserOption, as_person, done, one_line_errors, open_catalogue
from archive.cli.common import HomeOption, JsonOption, emit_json, fail

CollectionArg = Annotated[str, typer.Argument(help="The collection id, e.g. NSR-COL-0001.")]
CasesArg = Annotated[list[str], typer.Argument(help="Case ids, e.g. NSR-2026-00042.")]


def _print(collection: Collection, as_json: bool) -> None:
    if as_json:
        emit_json(collection.to_dict())
        return
    typer.echo(f"{collection.collection_id}  {collection.title}  ({len(collection.items)} cases)")
    typer.echo(f"  owner: {collection.owner}   updated: {collection.updated_at}")
    if collection.editors:
        typer.echo(f"  also edited by: {', '.join(collection.editors)}")
    if collection.description:
        typer.echo(f"  {collection.description}")
    for item in collection.items:
        typer.echo(f"  {item.position:>3}. {item.case_id:<16} {item.title or '(untitled)'}")


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Collections: ordered sets of teaching cases, e.g. exam preparation.",
        no_args_is_help=True,
    )
    app.add_typer(sub, name="collections")

    @sub.command("create")
    def create_cmd(
        home: HomeOption,
        title: Annotated[str, typer.Argument(help="The collection's title.")],
        description: Annotated[str, typer.Option(help="What the collection is for.")] = "",
        as_json: JsonOption = False,
        as_user: AsUserOption = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
    ) -> None:
        """Create an empty collection, owned by you (authenticated)."""
        room, me = as_person(home, user, password_file, token_file, as_user)
        collection = done(uc.create_collection(room, me, title, description)).collection
        if as_json:
            emit_json(collection.to_dict())
        else:
            typer.echo(f"created {collection.collection_id}  {collection.title}")

    @sub.command("list")
    def list_cmd(
        home: HomeOption, as_json: JsonOption = False, as_user: AsUserOption = None
    ) -> None:
        """List collections with their size."""
        catalogue = open_catalogue(home, as_user)
        with one_line_errors():
            collections = catalogue.list_collections()
        if as_json:
            emit_json([c.to_dict() for c in collections])
            return
        for c in collections:
            typer.echo(f"{c.collection_id:<14} {c.size:>4} cases  {c.owner:<14} {c.title}")
        if not collections:
            typer.echo("no collections yet; create one with `archive collections create`.")

    @sub.command("show")
    def show_cmd(
        home: HomeOption,
        collection_id: CollectionArg,
        include_withdrawn: Annotated[
            bool, typer.Option("--all", help="Also list withdrawn cases.")
        ] = False,
        as_json: JsonOption = False,
        as_user: AsUserOption = None,
    ) -> None:
        """Show a collection's cases in order."""
        catalogue = open_catalogue(home, as_user)
        with one_line_errors():
            collection = catalogue.get_collection(collection_id, include_withdrawn)
        _print(collection, as_json)

    @sub.command("add")
    def add_cmd(
        home: HomeOption,
        collection_id: CollectionArg,
        case_ids: CasesArg,
        position: Annotated[
            int | None, typer.Option(min=1, help="Insert at this position (default: the end).")
        ] = None,
        as_json: JsonOption = False,
        as_user: AsUserOption = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
    ) -> None:
        """Add cases to a collection (a case already in it moves to the new place)."""
        room, me = as_person(home, user, password_file, token_file, as_user)
        result = uc.add_to_collection(room, me, collection_id, case_ids, position)
        collection = done(result).collection
        _print(collection, as_json)

    @sub.command("remove")
    def remove_cmd(
        home: HomeOption,
        collection_id: CollectionArg,
        case_ids: CasesArg,
        as_json: JsonOption = False,
        as_user: AsUserOption = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
    ) -> None:
        """Remove cases from a collection (the cases themselves stay in the catalogue)."""
        room, me = as_person(home, user, password_file, token_file, as_user)
        collection = done(uc.remove_from_collection(room, me, collection_id, case_ids)).collection
        _print(collection, as_json)

    @sub.command("reorder")
    def reorder_cmd(
        home: HomeOption,
        collection_id: CollectionArg,
        case_ids: CasesArg,
        position: Annotated[
            int | None,
            typer.Option(min=1, help="Move the one case given to this position."),
        ] = None,
        as_json: JsonOption = False,
        as_user: AsUserOption = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
    ) -> None:
        """Put the cases given first, in that order; or move one case with --position."""
        if position is not None and len(case_ids) != 1:
            fail("give exactly one case id with --position.")
        room, me = as_person(home, user, password_file, token_file, as_user)
        if position is not None:
            result = uc.move_in_collection(room, me, collection_id, case_ids[0], position)
        else:
            result = uc.reorder_collection(room, me, collection_id, case_ids)
        _print(done(result).collection, as_json)

    @sub.command("share")
    def share_cmd(
        home: HomeOption,
        collection_id: CollectionArg,
        editors: Annotated[
            list[str] | None,
            typer.Argument(help="Who may edit it beside you (none given: only you)."),
        ] = None,
        as_json: JsonOption = False,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
    ) -> None:
        """Share editing of your collection with exactly these users (owner only)."""
        room, me = as_person(home, user, password_file, token_file)
        _print(done(uc.share_collection(room, me, collection_id, editors or [])).collection,
               as_json)  # fmt: skip

    @sub.command("delete")
    def delete_cmd(
        home: HomeOption,
        collection_id: CollectionArg,
        as_json: JsonOption = False,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
    ) -> None:
        """Delete your collection (owner only); its cases stay in the catalogue."""
        room, me = as_person(home, user, password_file, token_file)
        gone = done(uc.delete_collection(room, me, collection_id)).collection
        if as_json:
            emit_json({"deleted": gone.to_dict()})
        else:
            typer.echo(f"deleted {gone.collection_id}  {gone.title}")

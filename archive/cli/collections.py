"""`archive collections create|list|show|add|remove|reorder`: ordered sets of cases.

A collection (an exam-preparation set, a teaching session) has its own title and
description and keeps its cases in the order a trainer chose. Acting user, role check
and auditing work as for `archive cases` (see archive/cli/cases.py).
"""

from __future__ import annotations

from typing import Annotated

import typer

from archive.catalogue import Collection
from archive.cli.cases import AsUserOption, one_line_errors, open_catalogue
from archive.cli.common import HomeOption, JsonOption, emit_json, fail

CollectionArg = Annotated[str, typer.Argument(help="The collection id, e.g. NSR-COL-0001.")]
CasesArg = Annotated[list[str], typer.Argument(help="Case ids, e.g. NSR-2026-00042.")]


def _print(collection: Collection, as_json: bool) -> None:
    if as_json:
        emit_json(collection.to_dict())
        return
    typer.echo(f"{collection.collection_id}  {collection.title}  ({len(collection.items)} cases)")
    typer.echo(f"  owner: {collection.owner}   updated: {collection.updated_at}")
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
    ) -> None:
        """Create an empty collection owned by the acting user."""
        catalogue, who = open_catalogue(home, as_user, editing=True)
        with one_line_errors():
            collection = catalogue.create_collection(title, description, who)
        if as_json:
            emit_json(collection.to_dict())
        else:
            typer.echo(f"created {collection.collection_id}  {collection.title}")

    @sub.command("list")
    def list_cmd(
        home: HomeOption, as_json: JsonOption = False, as_user: AsUserOption = None
    ) -> None:
        """List collections with their size."""
        catalogue, _ = open_catalogue(home, as_user)
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
        catalogue, _ = open_catalogue(home, as_user)
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
    ) -> None:
        """Add cases to a collection (a case already in it moves to the new place)."""
        catalogue, who = open_catalogue(home, as_user, editing=True)
        with one_line_errors():
            collection = catalogue.add_to_collection(collection_id, case_ids, who, position)
        _print(collection, as_json)

    @sub.command("remove")
    def remove_cmd(
        home: HomeOption,
        collection_id: CollectionArg,
        case_ids: CasesArg,
        as_json: JsonOption = False,
        as_user: AsUserOption = None,
    ) -> None:
        """Remove cases from a collection (the cases themselves stay in the catalogue)."""
        catalogue, who = open_catalogue(home, as_user, editing=True)
        with one_line_errors():
            collection = catalogue.remove_from_collection(collection_id, case_ids, who)
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
    ) -> None:
        """Put the cases given first, in that order; or move one case with --position."""
        catalogue, who = open_catalogue(home, as_user, editing=True)
        with one_line_errors():
            if position is not None:
                if len(case_ids) != 1:
                    fail("give exactly one case id with --position.")
                collection = catalogue.move_in_collection(collection_id, case_ids[0], position, who)
            else:
                collection = catalogue.reorder_collection(collection_id, case_ids, who)
        _print(collection, as_json)

"""`archive cases list|search|show|edit|annotate`: the teaching catalogue from a shell.

Run on the archive's own machine, reading is the local operator's (who holds the home
anyway). Editing and annotating a case is a person's act (issue 21): it is made as the
person who authenticates with their own password or token (--as NAME with a prompt or
--password-file, or --token-file; archive.cli.api.authenticated_person) through the same
use case as the REST route and the web (archive.catalogue.usecases), which authorises
it (case.edit in policies/access/actions.toml) and audits it once. The old `--as-user
NAME`, which acted for a user without their password, is refused. A refusal is one
line: the reason and what to do next.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from archive.audit import audit_log_for
from archive.catalogue import (
    EDITABLE_FIELDS,
    SORTS,
    Case,
    Catalogue,
    SearchFilters,
    SearchPage,
    load_vocabulary,
)
from archive.catalogue import usecases as uc
from archive.cli.api import AsOption, PasswordFileOption, TokenFileOption, done
from archive.cli.common import HomeOption, JsonOption, emit_json, fail, load
from archive.core import Ports
from archive.db import open_database
from archive.errors import ArchiveError

AsUserOption = Annotated[
    str | None, typer.Option("--as-user", hidden=True, help="Removed (issue 21).")
]


def refuse_as_user(as_user: str | None) -> None:
    if as_user:
        fail(
            "--as-user is no longer accepted: nobody acts in another person's name. Use "
            "--as NAME with their own password (prompt or --password-file) or --token-file."
        )


def authenticate_editor(home: Path, user, password_file, token_file):
    """The editing person's Principal, from their own credentials (fails closed)."""
    from archive.cli.api import authenticated_person

    config = load(home)
    try:
        from archive.access import open_access_store  # the access room, loaded on demand
    except ImportError:
        fail("cannot authenticate the editor: user management is not installed.")
    try:
        store = open_access_store(config, config.policies_dir)
    except ArchiveError as exc:
        fail(f"cannot authenticate the editor: {exc}")
    try:
        log = audit_log_for(config.home)
        return authenticated_person(home, store, user, password_file, token_file, record=log.append)
    finally:
        store.conn.close()


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Domain errors become the CLI's one clear line, never a traceback."""
    try:
        yield
    except ArchiveError as exc:
        fail(str(exc))


def open_catalogue(home: Path, as_user: str | None = None) -> Catalogue:
    """The home's catalogue for reading on the archive's machine (the operator's)."""
    refuse_as_user(as_user)
    config = load(home)
    if not config.home.db_path.parent.is_dir():
        fail(f"{config.home.data_dir} does not exist; run `archive init` first.")
    with one_line_errors():
        return Catalogue(
            open_database(config),
            config.school_prefix,
            vocabulary=load_vocabulary(config.policies_dir),
        )


def catalogue_room(home: Path) -> uc.CatalogueRoom:
    """The catalogue's use cases on the home, auditing to its log as acts from the CLI."""
    catalogue = open_catalogue(home)
    config = load(home)
    ports = Ports(
        db=catalogue.repo.conn,
        audit=audit_log_for(config.home),
        policies_dir=config.policies_dir,
        source="cli",
    )
    return uc.CatalogueRoom(ports, config.school_prefix, catalogue.vocabulary,
                            _catalogue=catalogue)  # fmt: skip


def as_person(home: Path, user, password_file, token_file, as_user=None):
    """(the use cases, the authenticated person acting)."""
    refuse_as_user(as_user)
    principal = authenticate_editor(home, user, password_file, token_file)
    return catalogue_room(home), principal


def _filters(**values: list[str] | None) -> SearchFilters:
    return SearchFilters.of(**{k: v for k, v in values.items() if v})


def _summary_line(case: Case) -> str:
    mods = "/".join(case.modalities) or "-"
    return (
        f"{case.case_id:<16} {mods:<8} {case.body_part:<14} {case.difficulty or '-':<12} "
        f"{case.status:<11} {case.title or '(untitled)'}"
    )


def _print_page(page: SearchPage, as_json: bool) -> None:
    if as_json:
        emit_json(page.to_dict())
        return
    first = (page.page - 1) * page.per_page + 1 if page.items else 0
    last = first + len(page.items) - 1 if page.items else 0
    note = " (no case matched every word; showing the closest matches)" * (
        page.matched == "partial"
    )
    typer.echo(f"{page.total} cases, showing {first}-{last}{note}")
    for case in page.items:
        typer.echo(_summary_line(case))


def _print_case(case: Case, as_json: bool) -> None:
    if as_json:
        emit_json(case.to_dict())
        return
    typer.echo(f"{case.case_id}  {case.title or '(untitled)'}")
    facts = [
        ("status", case.status),
        ("level", case.level),
        ("modalities", ", ".join(case.modalities)),
        ("body part", case.body_part),
        ("series / images", f"{case.series_count} / {case.instance_count}"),
        ("age band / sex", f"{case.age_band or '-'} / {case.sex or '-'}"),
        ("intake", case.intake),
        ("added", case.added_at),
        ("category", case.category or "-"),
        ("difficulty", case.difficulty or "-"),
        ("review state", case.review_state),
        ("keywords", ", ".join(case.keywords) or "-"),
        ("authors", ", ".join(case.authors) or "-"),
    ]
    for label, value in facts:
        typer.echo(f"  {label + ':':<17}{value}")
    for name in (
        "clinical_history",
        "findings",
        "diagnosis",
        "differential",
        "discussion",
        "teaching_points",
        "anatomy",
        "references",
    ):
        text = getattr(case, name)
        if text:
            typer.echo(f"\n{name.replace('_', ' ').capitalize()}:\n{text}")
    if case.series:
        typer.echo("\nSeries:")
        for n, s in enumerate(case.series, start=1):
            typer.echo(f"  {n:>2}. {s.modality:<4} {s.instance_count:>5} images  {s.description}")


def _read_changes(path: Path) -> dict[str, Any]:
    """Teaching metadata from a JSON or TOML file holding one object of field: value."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}.")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError):
        fail(f"{path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}.")
    if not isinstance(data, dict):
        fail(f"{path} must hold one object of field names to values.")
    return data


FILTER_HELP = {
    "modality": "Only cases with this modality (repeat for any of several), e.g. CT.",
    "body_part": "Only this body part, e.g. CHEST.",
    "category": "Only this curriculum category, e.g. thoracic.",
    "difficulty": "Only this difficulty: primary, intermediate or advanced.",
    "level": "Only this de-identification level: limited-access or publication.",
    "collection": "Only cases in this collection, e.g. NSR-COL-0001.",
    "status": "Only this status; withdrawn cases appear only when named here.",
}


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Teaching cases: list, search, show, edit and annotate.", no_args_is_help=True
    )
    app.add_typer(sub, name="cases")

    def _search(
        home: Path,
        query: str,
        modality: list[str] | None,
        body_part: list[str] | None,
        category: list[str] | None,
        difficulty: list[str] | None,
        level: list[str] | None,
        collection: list[str] | None,
        status: list[str] | None,
        page: int,
        per_page: int,
        sort: str,
        as_json: bool,
        as_user: str | None,
    ) -> None:
        catalogue = open_catalogue(home, as_user)
        filters = _filters(
            modality=modality,
            body_part=body_part,
            category=category,
            difficulty=difficulty,
            level=level,
            collection=collection,
            status=status,
        )
        with one_line_errors():
            result = catalogue.search(query, filters, page=page, per_page=per_page, sort=sort)
        _print_page(result, as_json)

    @sub.command("list")
    def list_cmd(
        home: HomeOption,
        modality: Annotated[list[str] | None, typer.Option(help=FILTER_HELP["modality"])] = None,
        body_part: Annotated[list[str] | None, typer.Option(help=FILTER_HELP["body_part"])] = None,
        category: Annotated[list[str] | None, typer.Option(help=FILTER_HELP["category"])] = None,
        difficulty: Annotated[
            list[str] | None, typer.Option(help=FILTER_HELP["difficulty"])
        ] = None,
        level: Annotated[list[str] | None, typer.Option(help=FILTER_HELP["level"])] = None,
        collection: Annotated[
            list[str] | None, typer.Option(help=FILTER_HELP["collection"])
        ] = None,
        status: Annotated[list[str] | None, typer.Option(help=FILTER_HELP["status"])] = None,
        page: Annotated[int, typer.Option(min=1, help="Page number, from 1.")] = 1,
        per_page: Annotated[int, typer.Option(min=1, max=200, help="Cases per page.")] = 20,
        sort: Annotated[str, typer.Option(help=f"One of {', '.join(SORTS)}.")] = "-added",
        as_json: JsonOption = False,
        as_user: AsUserOption = None,
    ) -> None:
        """List cases, newest first, with optional filters."""
        _search(
            home, "", modality, body_part, category, difficulty, level, collection, status,
            page, per_page, sort, as_json, as_user,
        )  # fmt: skip

    @sub.command("search")
    def search_cmd(
        home: HomeOption,
        query: Annotated[
            str,
            typer.Argument(
                help='Words to find; "a phrase", -exclude, prefix*. Best matches first.'
            ),
        ],
        modality: Annotated[list[str] | None, typer.Option(help=FILTER_HELP["modality"])] = None,
        body_part: Annotated[list[str] | None, typer.Option(help=FILTER_HELP["body_part"])] = None,
        category: Annotated[list[str] | None, typer.Option(help=FILTER_HELP["category"])] = None,
        difficulty: Annotated[
            list[str] | None, typer.Option(help=FILTER_HELP["difficulty"])
        ] = None,
        level: Annotated[list[str] | None, typer.Option(help=FILTER_HELP["level"])] = None,
        collection: Annotated[
            list[str] | None, typer.Option(help=FILTER_HELP["collection"])
        ] = None,
        status: Annotated[list[str] | None, typer.Option(help=FILTER_HELP["status"])] = None,
        page: Annotated[int, typer.Option(min=1, help="Page number, from 1.")] = 1,
        per_page: Annotated[int, typer.Option(min=1, max=200, help="Cases per page.")] = 20,
        sort: Annotated[str, typer.Option(help=f"One of {', '.join(SORTS)}.")] = "relevance",
        as_json: JsonOption = False,
        as_user: AsUserOption = None,
    ) -> None:
        """Full-text search over the teaching metadata, with the same filters as list."""
        _search(
            home, query, modality, body_part, category, difficulty, level, collection, status,
            page, per_page, sort, as_json, as_user,
        )  # fmt: skip

    @sub.command("show")
    def show_cmd(
        home: HomeOption,
        case_id: Annotated[str, typer.Argument(help="The case id, e.g. NSR-2026-00042.")],
        as_json: JsonOption = False,
        as_user: AsUserOption = None,
    ) -> None:
        """Show one case: its facts, teaching metadata and series."""
        catalogue = open_catalogue(home, as_user)
        with one_line_errors():
            case = catalogue.get(case_id)
        _print_case(case, as_json)

    @sub.command("edit")
    def edit_cmd(
        home: HomeOption,
        case_id: Annotated[str, typer.Argument(help="The case id, e.g. NSR-2026-00042.")],
        title: Annotated[str | None, typer.Option(help="Case title.")] = None,
        clinical_history: Annotated[str | None, typer.Option(help="Clinical history.")] = None,
        findings: Annotated[str | None, typer.Option(help="Imaging findings.")] = None,
        diagnosis: Annotated[str | None, typer.Option(help="Diagnosis.")] = None,
        differential: Annotated[str | None, typer.Option(help="Differential diagnosis.")] = None,
        discussion: Annotated[str | None, typer.Option(help="Discussion.")] = None,
        teaching_points: Annotated[str | None, typer.Option(help="Teaching points.")] = None,
        anatomy: Annotated[str | None, typer.Option(help="Anatomy or organ system.")] = None,
        references: Annotated[str | None, typer.Option(help="References.")] = None,
        keywords: Annotated[
            str | None, typer.Option(help="Keywords, comma-separated (replaces the list).")
        ] = None,
        authors: Annotated[
            str | None, typer.Option(help="Authors, comma-separated (replaces the list).")
        ] = None,
        category: Annotated[
            str | None, typer.Option(help="Curriculum category (policies/catalogue).")
        ] = None,
        difficulty: Annotated[
            str | None, typer.Option(help="primary, intermediate or advanced.")
        ] = None,
        review_state: Annotated[str | None, typer.Option(help="draft or reviewed.")] = None,
        from_file: Annotated[
            Path | None,
            typer.Option(
                "--from-file",
                help="A JSON or TOML file of field = value (options given here win).",
            ),
        ] = None,
        as_json: JsonOption = False,
        as_user: AsUserOption = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
    ) -> None:
        """Change teaching metadata as yourself; free text is checked for patient
        identifiers first."""
        refuse_as_user(as_user)
        changes: dict[str, Any] = _read_changes(from_file) if from_file else {}
        given = {
            "title": title,
            "clinical_history": clinical_history,
            "findings": findings,
            "diagnosis": diagnosis,
            "differential": differential,
            "discussion": discussion,
            "teaching_points": teaching_points,
            "anatomy": anatomy,
            "references": references,
            "keywords": keywords,
            "authors": authors,
            "category": category,
            "difficulty": difficulty,
            "review_state": review_state,
        }
        changes.update({k: v for k, v in given.items() if v is not None})
        if not changes:
            fail(
                f"nothing to change; give at least one of --{', --'.join(given)}.".replace("_", "-")
            )
        room, principal = as_person(home, user, password_file, token_file)
        case = done(uc.edit_case(room, principal, case_id, changes)).case
        if as_json:
            emit_json(case.to_dict())
        else:
            typer.echo(f"{case.case_id}: saved {', '.join(sorted(changes))}")

    @sub.command("annotate")
    def annotate_cmd(
        home: HomeOption,
        case_id: Annotated[str, typer.Argument(help="The case id, e.g. NSR-2026-00042.")],
        field: Annotated[
            str,
            typer.Argument(
                help="Field to add to: a text field (new paragraph) or keywords/authors "
                "(new items)."
            ),
        ],
        text: Annotated[str, typer.Argument(help="The text (or comma-separated items) to add.")],
        as_json: JsonOption = False,
        as_user: AsUserOption = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
    ) -> None:
        """Add to a field as yourself, e.g. a teaching point or keywords."""
        refuse_as_user(as_user)
        if field.replace("-", "_") not in EDITABLE_FIELDS:
            fail(f"unknown field {field!r}; choose one of {', '.join(EDITABLE_FIELDS)}.")
        room, principal = as_person(home, user, password_file, token_file)
        case = done(uc.annotate_case(room, principal, case_id, field.replace("-", "_"), text))
        case = case.case
        if as_json:
            emit_json(case.to_dict())
        else:
            typer.echo(f"{case.case_id}: added to {field}")

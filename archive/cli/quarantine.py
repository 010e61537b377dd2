"""`archive quarantine list|show|mask|release|reject|consent`: the pixel review.

Runs on the archive home with the keyring (held instances are encrypted). `show` writes
a preview PNG, which may show burnt-in identifiers, to the path the reviewer names,
created 0600 and never over an existing file; keep it on the encrypted volume and
delete it after review. `release` goes through the running archive (plugin route) so
the reviewed instance enters Orthanc unchanged with a one-time ticket; every other step
works on the home directly. Every step is audited.

The reviewer acts for themselves (issue 21): mask, reject and consent are
authenticated on the home with the reviewer's own password or token
(archive.cli.api.authenticated_person) and call the quarantine's use cases
(archive.quarantine.usecases, which authorise and audit them); release goes over REST
with the same credentials to the route that calls the release use case. Nobody is named
on the operator's word (the old --reviewer and consent --by are refused).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from archive.audit import AuditEvent
from archive.cli.api import (
    AsOption,
    PasswordFileOption,
    TokenFileOption,
    api_client,
    authenticated_person,
    call,
    done,
)
from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail, load, stdin_is_tty
from archive.errors import ArchiveError


@contextmanager
def _opened(home: Path):
    """(runtime, quarantine store); one clear error line if the home cannot open."""
    from archive.quarantine import QuarantineStore
    from archive.runtime import Runtime

    config = load(home)
    try:
        runtime = Runtime.open(config, prompt=stdin_is_tty())
        store = QuarantineStore(config.home, runtime.keyring, runtime.db())
    except ArchiveError as exc:
        fail(str(exc))
    try:
        yield runtime, store
    finally:
        runtime.db().close()


def _audit(runtime, action: str, outcome: str, who: str, target: str | None, **detail) -> None:
    runtime.record(
        AuditEvent(
            action=action,
            outcome=outcome,
            actor=who,
            source="cli",
            target=target,
            detail={k: v for k, v in detail.items() if v is not None},
        )
    )


ReviewerOption = Annotated[
    str | None, typer.Option("--reviewer", hidden=True, help="Removed (issue 21).")
]


def _no_reviewer(reviewer: str | None) -> None:
    if reviewer:
        fail(
            "--reviewer is no longer accepted: the reviewer acts for themselves. Use "
            "--as NAME with their own password (prompt or --password-file) or --token-file."
        )


def _reviewer(home: Path, runtime, user, password_file, token_file):
    """The reviewer's Principal, from their own credentials; whether they may review is
    the use case's to decide (policies/access/actions.toml)."""
    from archive.access import AccessStore

    return authenticated_person(
        home, AccessStore(runtime.db()), user, password_file, token_file, record=runtime.record
    )


def _room(runtime, store):
    from archive.core import Ports
    from archive.quarantine.usecases import QuarantineRoom

    ports = Ports(db=runtime.db(), audit=runtime.audit,
                  policies_dir=runtime.config.policies_dir, source="cli")  # fmt: skip
    return QuarantineRoom(ports, store, _masking(runtime.config))


def _masking(config):
    from archive.pixels import load_masking_policy

    return load_masking_policy(config.policies_dir)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Review held instances: list, show, mask, release, reject; photograph consent.",
        no_args_is_help=True,
    )
    app.add_typer(sub, name="quarantine")

    @sub.command("list")
    def list_cmd(
        home: HomeOption,
        status: Annotated[str, typer.Option(help="held, released, rejected or all.")] = "held",
        as_json: JsonOption = False,
    ) -> None:
        """List quarantine items (held ones by default)."""
        with _opened(home) as (runtime, store):
            items = store.list(None if status == "all" else status)
            _audit(runtime, "quarantine.list", "success", actor(), None, count=len(items))
        if as_json:
            emit_json([i.as_dict() for i in items])
            return
        for i in items:
            typer.echo(f"{i.id}  {i.status:8} {i.modality or '-':4} {i.kind:6} {i.reason}")
        if not items:
            typer.echo("no items")

    @sub.command("show")
    def show_cmd(
        item: str,
        home: HomeOption,
        out: Annotated[
            Path | None,
            typer.Option(help="Write a preview PNG here (0600, never overwritten)."),
        ] = None,
        frame: Annotated[int, typer.Option(help="Frame to preview (0-based).")] = 0,
        as_json: JsonOption = False,
    ) -> None:
        """Show one item; with --out, render a preview PNG for the reviewer."""
        from archive.quarantine.review import preview, write_private

        with _opened(home) as (runtime, store):
            try:
                record = store.get(item)
                written = None
                if out is not None:
                    written = write_private(out, preview(store, item, frame))
            except FileExistsError:
                fail(f"{out} exists; name a new file for the preview.")
            except (ArchiveError, OSError) as exc:
                fail(str(exc))
            _audit(
                runtime,
                "quarantine.show",
                "success",
                actor(),
                item,
                preview=str(written) if written else None,
            )
        payload = record.as_dict() | {"preview": str(written) if written else None}
        if as_json:
            emit_json(payload)
            return
        for key, value in payload.items():
            typer.echo(f"{key}: {value}")
        if written:
            typer.echo(f"preview written to {written} (mode 0600; may show identifiers)")

    @sub.command("mask")
    def mask_cmd(
        item: str,
        home: HomeOption,
        region: Annotated[
            list[str], typer.Option("--region", help="x,y,width,height to black out (repeat).")
        ],
        image_area: Annotated[
            list[str] | None,
            typer.Option("--image-area", help="x,y,width,height of the clinical image (repeat)."),
        ] = None,
        save_template: Annotated[
            str | None,
            typer.Option(help="Also save these regions as a masking template of this name."),
        ] = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Black out regions in every frame, then OCR what is left (BurnedInAnnotation honest)."""
        from archive.pixels import define_template
        from archive.pixels import save_template as save
        from archive.quarantine.review import parse_region
        from archive.quarantine.usecases import mask_item

        try:
            regions = [parse_region(r) for r in region]
            area = [parse_region(r) for r in image_area or []]
        except ArchiveError as exc:
            fail(str(exc))

        def keep(result, who: str) -> str:
            template = define_template(
                save_template, str(result.device["manufacturer"]),
                str(result.device["model"]), int(result.device["rows"]),
                int(result.device["columns"]), str(result.device["modality"]), regions,
                image_area=area, description=f"from quarantine review of {item} by {who}",
            )  # fmt: skip
            return str(save(runtime.config.policies_dir, template))

        with _opened(home) as (runtime, store):
            me = _reviewer(home, runtime, user, password_file, token_file)
            masked = done(mask_item(_room(runtime, store), me, item, regions, area,
                                    save_template=keep if save_template else None))  # fmt: skip
        result, saved = masked.result, masked.template
        payload = {
            "item": item,
            "words_left": result.words_left,
            "ocr_clean": result.words_left == 0,
            "template": str(saved) if saved else None,
        }
        if as_json:
            emit_json(payload)
            return
        if result.words_left:
            typer.echo(f"masked; OCR still finds {result.words_left} words: mask more or reject")
        else:
            typer.echo("masked; OCR finds no text outside the regions and image area")
        if saved:
            typer.echo(f"template saved to {saved} (used by ingest after a restart)")

    @sub.command("release")
    def release_cmd(
        item: str,
        home: HomeOption,
        note: Annotated[str, typer.Option(help="Why it may be released.")] = "",
        reviewer: ReviewerOption = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Release a reviewed item into the running archive, unchanged (one-time ticket),
        as yourself (never whoever ingested it)."""
        _no_reviewer(reviewer)
        with api_client(home, user, password_file, token_file) as client:
            body = call(client, "POST", f"/teaching/quarantine/{item}/release",
                        json={"note": note}, timeout=300)  # fmt: skip
        if as_json:
            emit_json(body)
            return
        who = (body.get("item") or {}).get("reviewer") or user or actor()
        typer.echo(f"released {item} by {who}; Orthanc id {body.get('orthanc_id')}")

    @sub.command("reject")
    def reject_cmd(
        item: str,
        home: HomeOption,
        note: Annotated[str, typer.Option(help="Why.")] = "",
        reviewer: ReviewerOption = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
    ) -> None:
        """Reject an item as yourself: its ciphertext (and wrapped key) is deleted for good."""
        _no_reviewer(reviewer)
        from archive.quarantine.usecases import reject_item

        with _opened(home) as (runtime, store):
            me = _reviewer(home, runtime, user, password_file, token_file)
            who = done(reject_item(_room(runtime, store), me, item, note)).item.decided_by
        typer.echo(f"rejected {item} by {who}; its encrypted copy is deleted")

    @sub.command("consent")
    def consent_cmd(
        study: Annotated[str, typer.Argument(help="De-identified Study Instance UID.")],
        home: HomeOption,
        level: Annotated[str, typer.Option(help="Consent level from policies/consent.toml.")],
        source_uid: Annotated[
            bool,
            typer.Option(
                "--source-uid",
                help="STUDY is the hospital's Study UID (before ingest): it is mapped with "
                "the archive's key and only the de-identified UID is stored.",
            ),
        ] = False,
        note: Annotated[str, typer.Option(help="Where the signed form is kept.")] = "",
        by: Annotated[
            str | None, typer.Option("--by", hidden=True, help="Removed (issue 21).")
        ] = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
    ) -> None:
        """Record a photograph consent level against a study (at ingest or later), as
        yourself."""
        from archive.deid import DeidSecrets, map_uid
        from archive.quarantine.usecases import record_consent

        if by:
            fail("--by is no longer accepted: consent is recorded by whoever records it, "
                 "as themselves. Use --as NAME with their own password (prompt or "
                 "--password-file) or --token-file.")  # fmt: skip
        with _opened(home) as (runtime, store):
            me = _reviewer(home, runtime, user, password_file, token_file)
            uid = study
            if source_uid:
                uid = map_uid(study, DeidSecrets(pseudonym_key=runtime.keyring.pseudonym_key))
            done(record_consent(_room(runtime, store), me, uid, level, note))
        typer.echo(f"consent {level} recorded for study {uid} by {me.user}")

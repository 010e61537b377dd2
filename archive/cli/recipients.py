"""`archive recipients add|list|show|agreement|deactivate`: third parties the Board may
share with (issue 9).

Run on the archive home (local operator = administrator); every change is audited. A
recipient with a DICOM node is also registered as a send-only DICOM node
(`recipient-<id>`, no store or query rights), which Orthanc learns at the next
`archive serve`. Commercial recipients are refused by the governance policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from archive.audit import AuditError, AuditEvent
from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail, load
from archive.cli.users import now, opened
from archive.errors import ArchiveError
from archive.governance import DicomNode, Recipients, load_policy
from archive.governance.sharing.delivery import recipient_node_name


@contextmanager
def governance(home: Path) -> Iterator[tuple[Any, Any, Any]]:
    """(access store, audit log, governance policy) for the home, or one error line."""
    config = load(home)
    try:
        policy = load_policy(config.policies_dir)
    except ArchiveError as exc:
        fail(str(exc))
    with opened(home) as (store, log):
        yield store, log, policy


def audit(log, action: str, subject: str, outcome: str, **detail: object) -> None:
    """One CLI audit record; a refused success record is itself an error."""
    try:
        log.append(
            AuditEvent(
                action, outcome, actor(), source="cli", target=subject or None, detail=detail
            )
        )
    except AuditError as exc:
        if outcome == "success":
            fail(f"done, but the audit log refused the record: {exc}")


def describe(r: dict) -> str:
    node = r["dicom_node"]
    where = []
    if node:
        where.append(f"{node['aet']}@{node['host']}:{node['port']}")
    if r["public_key"]:
        where.append(f"age {r['public_key'][:16]}...")
    dsa = "agreement on file" if r["data_sharing_agreement"] else "no agreement"
    state = "" if r["active"] else "  (deactivated)"
    return (
        f"{r['id']:>4} {r['organisation']:<36} {r['kind']:<26} {dsa:<18} {', '.join(where)}{state}"
    )


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Third parties the School Board may share with.", no_args_is_help=True)
    app.add_typer(sub, name="recipients")

    @sub.command("add")
    def add_cmd(
        organisation: Annotated[str, typer.Argument(help="The receiving organisation.")],
        home: HomeOption,
        kind: Annotated[
            str,
            typer.Option(
                "--kind",
                help="uk_radiology_school, rcr_vca, rcr_riti or trust_teaching_collection.",
            ),
        ],
        contact: Annotated[str, typer.Option("--contact", help="Named contact and address.")],
        aet: Annotated[str | None, typer.Option("--aet", help="Its DICOM node's AE title.")] = None,
        host: Annotated[str | None, typer.Option("--host", help="Its DICOM node's host.")] = None,
        port: Annotated[int | None, typer.Option("--port", help="Its DICOM port.")] = None,
        public_key: Annotated[
            str | None, typer.Option("--public-key", help="Its age public key (age1...).")
        ] = None,
        agreement: Annotated[
            bool,
            typer.Option("--agreement/--no-agreement", help="A data-sharing agreement is on file."),
        ] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Add a recipient (refused if commercial); restart `archive serve` for its node."""
        parts = (aet, host, port)
        if any(p is not None for p in parts) and not all(p is not None for p in parts):
            fail("a DICOM node needs all of --aet, --host and --port.")
        with governance(home) as (store, log, policy):
            try:
                node = DicomNode(aet, host, port) if aet is not None else None  # type: ignore[arg-type]
                made = Recipients(store.conn, policy).add(
                    organisation,
                    kind,
                    contact,
                    dicom_node=node,
                    public_key=public_key,
                    data_sharing_agreement=agreement,
                    added_by=actor(),
                    now=now(),
                )
                if node is not None:
                    store.add_dicom_node(
                        recipient_node_name(made.id), node.aet, node.host, node.port
                    )
            except ArchiveError as exc:
                audit(log, "governance.recipient.add", "", "denied", kind=str(kind)[:40])
                fail(str(exc))
            audit(
                log, "governance.recipient.add", str(made.id), "success",
                kind=made.kind, methods=",".join(made.methods),
                agreement=made.data_sharing_agreement,
            )  # fmt: skip
        if as_json:
            emit_json(made.to_dict())
        else:
            typer.echo(f"recipient {made.id} added: {made.organisation}")
            if node is not None:
                typer.echo(f"  DICOM node {recipient_node_name(made.id)} (restart archive serve)")

    @sub.command("list")
    def list_cmd(
        home: HomeOption,
        include_all: Annotated[bool, typer.Option("--all", help="Include deactivated.")] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Recipients with their kind, agreement and how shares reach them."""
        with governance(home) as (store, _, policy):
            rows = [
                r.to_dict()
                for r in Recipients(store.conn, policy).list(include_inactive=include_all)
            ]
        if as_json:
            emit_json(rows)
            return
        for r in rows:
            typer.echo(describe(r))

    @sub.command("show")
    def show_cmd(
        recipient_id: Annotated[int, typer.Argument(help="The recipient's number.")],
        home: HomeOption,
        as_json: JsonOption = False,
    ) -> None:
        """One recipient in full."""
        with governance(home) as (store, _, policy):
            try:
                r = Recipients(store.conn, policy).get(recipient_id).to_dict()
            except ArchiveError as exc:
                fail(str(exc))
        if as_json:
            emit_json(r)
            return
        typer.echo(describe(r))
        typer.echo(f"  contact: {r['contact']}")
        typer.echo(f"  added by {r['added_by']} on {r['added_at']}")
        if r["public_key"]:
            typer.echo(f"  public key: {r['public_key']}")

    @sub.command("agreement")
    def agreement_cmd(
        recipient_id: Annotated[int, typer.Argument(help="The recipient's number.")],
        home: HomeOption,
        on_file: Annotated[
            bool,
            typer.Option("--on-file/--lapsed", help="The agreement is signed / has lapsed."),
        ] = True,
        as_json: JsonOption = False,
    ) -> None:
        """Record that a data-sharing agreement is on file (or has lapsed)."""
        with governance(home) as (store, log, policy):
            try:
                r = Recipients(store.conn, policy).set_data_sharing_agreement(recipient_id, on_file)
            except ArchiveError as exc:
                audit(log, "governance.recipient.agreement", str(recipient_id), "denied")
                fail(str(exc))
            audit(log, "governance.recipient.agreement", str(r.id), "success", on_file=on_file)
        if as_json:
            emit_json(r.to_dict())
        else:
            state = "on file" if on_file else "lapsed"
            typer.echo(f"recipient {r.id}: data-sharing agreement {state}")

    @sub.command("deactivate")
    def deactivate_cmd(
        recipient_id: Annotated[int, typer.Argument(help="The recipient's number.")],
        home: HomeOption,
        as_json: JsonOption = False,
    ) -> None:
        """Stop further shares to a recipient; its history stays in the register."""
        with governance(home) as (store, log, policy):
            try:
                r = Recipients(store.conn, policy).deactivate(recipient_id)
                name = recipient_node_name(r.id)
                if any(n.name == name for n in store.list_dicom_nodes()):
                    store.remove_dicom_node(name)
            except ArchiveError as exc:
                audit(log, "governance.recipient.deactivate", str(recipient_id), "denied")
                fail(str(exc))
            audit(log, "governance.recipient.deactivate", str(r.id), "success")
        if as_json:
            emit_json(r.to_dict())
        else:
            typer.echo(f"recipient {r.id} deactivated (restart archive serve to drop its node)")

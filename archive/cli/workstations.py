"""`archive workstations add|list|remove`: the suite's workstations that may pull cases.

A workstation is a DICOM node with query/retrieve rights (C-FIND, C-MOVE to its own AE,
never C-STORE into the archive) plus its location in the suite, so closure knows which
machine holds pulled cases: one registry, archive.access.nodes.Workstations. The DICOM
front (archive/dicom/front.py) reads the register as it changes: no restart needed.
"""

from __future__ import annotations

from typing import Annotated

import typer

from archive.audit import AuditError, AuditEvent
from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail
from archive.cli.users import now, opened
from archive.errors import ArchiveError


def _audit(log, action: str, name: str, outcome: str, **detail) -> None:
    try:
        log.append(
            AuditEvent(action, outcome, actor(), source="cli", detail={"subject": name, **detail})
        )
    except AuditError as exc:
        if outcome == "success":
            fail(f"done, but the audit log refused the record: {exc}")


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Suite workstations that may query and pull cases.", no_args_is_help=True
    )
    app.add_typer(sub, name="workstations")

    @sub.command("add")
    def add_cmd(
        name: Annotated[str, typer.Argument(help="A short name, e.g. ws-01.")],
        home: HomeOption,
        aet: Annotated[str, typer.Option("--aet", help="The workstation's AE title.")],
        host: Annotated[str, typer.Option("--host", help="The workstation's IP address.")],
        location: Annotated[str, typer.Option("--location", help="Where it is in the suite.")],
        port: Annotated[int, typer.Option("--port", help="Its DICOM (store SCP) port.")] = 104,
        as_json: JsonOption = False,
    ) -> None:
        """Register a workstation for query/retrieve (the running archive applies it at once)."""
        with opened(home) as (store, log):
            try:
                place = store.workstations.add(name, aet, host, port, location, actor(), now())
            except ArchiveError as exc:
                _audit(log, "workstations.add", name, "failure", aet=aet)
                fail(str(exc))
            _audit(log, "workstations.add", name, "success", aet=aet, location=location)
        row = {
            "name": place.name,
            "aet": place.aet,
            "host": place.host,
            "port": place.port,
            "may_store": False,
            "may_query": True,
            "location": place.location,
        }
        if as_json:
            emit_json(row)
        else:
            typer.echo(
                f"workstation {name}: {aet}@{place.host}:{port} in {location}"
                " may query and retrieve"
            )

    @sub.command("list")
    def list_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """Registered workstations with their location."""
        with opened(home) as (store, _):
            places = store.workstations.all()
            rows = [
                {**n.__dict__, "location": places[n.name].location}
                for n in store.list_dicom_nodes()
                if n.name in places
            ]
        if as_json:
            emit_json(rows)
            return
        for r in rows:
            typer.echo(f"{r['name']:<16} {r['aet']:<16} {r['host']}:{r['port']}  {r['location']}")

    @sub.command("remove")
    def remove_cmd(
        name: Annotated[str, typer.Argument(help="The workstation's name.")], home: HomeOption
    ) -> None:
        """Unregister a workstation (its pull inventory is kept for closure)."""
        with opened(home) as (store, log):
            try:
                store.workstations.remove(name)
            except ArchiveError as exc:
                _audit(log, "workstations.remove", name, "failure")
                fail(str(exc))
            _audit(log, "workstations.remove", name, "success")
        typer.echo(f"workstation {name} removed")

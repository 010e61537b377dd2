"""`archive sources add|list|remove`: the DICOM nodes allowed to send studies in.

Only registered sources (AE title and host) may C-STORE; the archive's DICOM front
(archive/dicom/front.py) reads the register as it changes, no restart needed.
"""

from __future__ import annotations

from typing import Annotated

import typer

from archive.cli.common import HomeOption, JsonOption, emit_json
from archive.cli.users import audited, opened


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Registered DICOM sources that may send studies.", no_args_is_help=True)
    app.add_typer(sub, name="sources")

    @sub.command("add")
    def add_cmd(
        name: Annotated[str, typer.Argument(help="A short name, e.g. pacs-gateway.")],
        home: HomeOption,
        aet: Annotated[str, typer.Option("--aet", help="The source's calling AE title.")],
        host: Annotated[str, typer.Option("--host", help="The source's IP address.")],
        port: Annotated[int, typer.Option("--port", help="The source's DICOM port.")] = 104,
        as_json: JsonOption = False,
    ) -> None:
        """Register a source; restart `archive serve` for Orthanc to accept it."""
        with opened(home) as (store, log):
            node = audited(
                log,
                "sources.add",
                name,
                lambda: store.add_dicom_node(name, aet, host, port, may_store=True),
                aet=aet,
            )
        if as_json:
            emit_json(node.__dict__)
        else:
            typer.echo(f"source {node.name}: {node.aet}@{node.host} may store (restart serve)")

    @sub.command("list")
    def list_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """Registered sources."""
        with opened(home) as (store, _):
            nodes = [n.__dict__ for n in store.list_dicom_nodes() if n.may_store]
        if as_json:
            emit_json(nodes)
            return
        for node in nodes:
            typer.echo(f"{node['name']:<20} {node['aet']:<16} {node['host']}:{node['port']}")

    @sub.command("remove")
    def remove_cmd(
        name: Annotated[str, typer.Argument(help="The source's name.")], home: HomeOption
    ) -> None:
        """Unregister a source."""
        with opened(home) as (store, log):
            audited(log, "sources.remove", name, lambda: store.remove_dicom_node(name))
        typer.echo(f"source {name} removed (restart serve)")

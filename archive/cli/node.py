"""`archive node join`: a node on another host (its own home, the shared database and
storage, a copy of the keyring unlocked by the same passphrase). See ops/SCALE-OUT.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail
from archive.errors import ArchiveError

node_app = typer.Typer(
    help="Nodes of an archive on several hosts (shared PostgreSQL and storage).",
    no_args_is_help=True,
)


@node_app.command("join")
def join(
    home: HomeOption,
    source: Annotated[
        Path,
        typer.Option(
            "--from",
            help="A directory holding an existing node's archive.toml, keyring.json and "
            "audit_public_key (flat, or as HOME/ and HOME/keys/).",
            show_default=False,
        ),
    ],
    http_host: Annotated[str, typer.Option(help="This node's web address.")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(help="This node's web port.")] = 8042,
    dicom_host: Annotated[str, typer.Option(help="This node's DICOM address.")] = "0.0.0.0",  # noqa: S104
    dicom_port: Annotated[int, typer.Option(help="This node's DICOM port.")] = 4242,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            help="A 0600 file with the keyring passphrase (the same as the other nodes'); "
            "default: $ARCHIVE_KEYRING_PASSPHRASE_FILE, else a prompt."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Make HOME a new node of an existing archive on another host.

    The new home gets the source's archive.toml with this node's addresses and ports,
    a copy of the keyring (checked with the passphrase) and of the pinned audit key;
    the shared audit chain must verify under that key, and the join is audited there.
    Then start it with `archive serve --home HOME`."""
    import os  # noqa: PLC0415

    from archive.serve.join import join_node  # noqa: PLC0415
    from archive.vault.passphrase import (  # noqa: PLC0415
        PASSPHRASE_FILE_ENV,
        prompt_passphrase,
        read_passphrase_file,
    )

    try:
        if passphrase_file is not None:
            passphrase = read_passphrase_file(passphrase_file)
        elif os.environ.get(PASSPHRASE_FILE_ENV):
            passphrase = read_passphrase_file(Path(os.environ[PASSPHRASE_FILE_ENV]))
        else:
            passphrase = prompt_passphrase("Keyring passphrase: ")
        config, _ring = join_node(
            home,
            source,
            passphrase,
            http_host=http_host,
            http_port=http_port,
            dicom_host=dicom_host,
            dicom_port=dicom_port,
            operator=actor(),
        )
    except ArchiveError as exc:
        fail(f"{exc} Nothing was created at {home}.")
    result = {
        "home": str(config.home.root),
        "http": f"{config.http.host}:{config.http.port}",
        "dicom": f"{config.dicom.host}:{config.dicom.port}",
        "database": f"{config.database.host}:{config.database.port}/{config.database.database}",
        "storage": config.storage.kind,
        "next": f"archive serve --home {config.home.root}",
    }
    if as_json:
        emit_json(result)
    else:
        typer.echo(
            f"Node home ready at {result['home']} (web {result['http']}, DICOM "
            f"{result['dicom']}, storage {result['storage']}). Start it with: {result['next']}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(node_app, name="node")

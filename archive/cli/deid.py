"""`archive deid SRC DEST`: preview offline what ingest would do with some DICOM files.

The same engine, policy and pseudonym key as ingest, so the preview shows exactly the
pseudonyms, UIDs and quarantine decisions ingest would produce. Released files are
named by their new SOP Instance UID (source file names may carry patient names);
quarantined and refused files are listed with their reasons and not written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from archive.audit import AuditEvent, audit_log_for
from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail, load
from archive.config import ArchiveConfig
from archive.deid import DeidInputError, DeidSecrets, deidentify, load_policy
from archive.errors import ArchiveError

KEY_FILE_NAME = "pseudonym.key"


def pseudonym_key(config: ArchiveConfig) -> bytes:
    """The 32-byte pseudonym key: from the keyring (as ingest uses it). Only if the vault
    room is absent, from HOME/keys/pseudonym.key (created 0600). Swap here if needed."""
    try:
        from archive.vault import open_keyring_for_cli  # noqa: PLC0415 - optional room
    except ImportError:
        return _key_file(config.home.keys_dir / KEY_FILE_NAME)
    return open_keyring_for_cli(config).pseudonym_key


def _key_file(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
    key = path.read_bytes()
    if len(key) != 32:
        raise ArchiveError(f"{path} must hold exactly 32 bytes; restore it from backup.")
    return key


def _sources(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    if src.is_dir():
        return sorted(p for p in src.rglob("*") if p.is_file())
    fail(f"{src} is neither a file nor a folder; give a DICOM file or a folder of them.")


def deid_command(
    src: Annotated[Path, typer.Argument(help="A DICOM file or a folder of them.")],
    dest: Annotated[Path, typer.Argument(help="Folder for the released (de-identified) files.")],
    home: HomeOption,
    as_json: JsonOption = False,
) -> None:
    """Preview ingest offline: de-identified files go to DEST, the rest are listed."""
    config = load(home)
    try:
        policy = load_policy(config.policies_dir)
        secrets = DeidSecrets(pseudonym_key(config))
    except ArchiveError as exc:
        fail(str(exc))
    files = _sources(src)
    if dest.resolve() == src.resolve() or src.resolve() in dest.resolve().parents:
        fail("DEST must not be inside SRC; choose another folder.")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    released, quarantined, refused = [], [], []
    for path in files:
        rel = str(path.relative_to(src)) if src.is_dir() else path.name
        try:
            result = deidentify(path.read_bytes(), policy, secrets, intake="cli")
        except DeidInputError as exc:
            refused.append({"file": rel, "reason": str(exc)})
            continue
        if result.released is not None:
            out = dest / f"{result.sop_instance_uid}.dcm"
            out.write_bytes(result.released)
            released.append(
                {
                    "file": rel,
                    "output": out.name,
                    "patient": result.patient_pseudonym,
                    "study_uid": result.study_uid,
                    "modality": result.modality,
                }
            )
        else:
            quarantined.append({"file": rel, "reason": result.quarantine_reason})
    summary = {
        "policy_version": policy.version,
        "level": policy.level,
        "released": released,
        "quarantined": quarantined,
        "refused": refused,
        "counts": {
            "released": len(released),
            "quarantined": len(quarantined),
            "refused": len(refused),
        },
    }
    # Counts only: source file names may carry patient names and never go in the log.
    try:
        audit_log_for(config.home).append(
            AuditEvent(
                "deid.preview",
                "success",
                actor(),
                source="cli",
                detail={"policy": policy.version, **summary["counts"]},
            )
        )
    except ArchiveError as exc:
        fail(f"de-identified, but the audit log refused the record: {exc}")
    if as_json:
        emit_json(summary)
        return
    typer.echo(
        f"{len(released)} released to {dest}, {len(quarantined)} quarantined, "
        f"{len(refused)} refused (policy {policy.version})."
    )
    for item in quarantined:
        typer.echo(f"quarantined  {item['file']}: {item['reason']}")
    for item in refused:
        typer.echo(f"refused      {item['file']}: {item['reason']}")


def register(app: typer.Typer) -> None:
    app.command("deid")(deid_command)

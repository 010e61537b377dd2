"""`archive withdraw --issuer X`: a patient's consent withdrawal or objection.

The archive stores no source identifiers, so the pseudonym is recomputed from the issuer
and patient ID with the keyring's pseudonym key, then:
1. the pseudonym goes on the opt-out register (hashed) first, so a study arriving while
   this runs is already discarded at ingest;
2. the running archive crypto-shreds and deletes that patient's studies (REST, as a
   signed-in person: the deletion must start outside Orthanc's Python) and the catalogue
   marks the cases withdrawn;
3. the withdrawal is recorded, and every share, export and workstation that already
   carried the cases is listed, so deletion requests can be sent.
Every step is the signed-in person's (--as NAME with their password, or --token-file;
issue 21), authorised as withdrawal.carry_out and audited as them. Neither the issuer,
the patient ID nor the pseudonym is printed, logged or audited. The
patient ID is never a command-line argument (shell history, `ps`): it is typed at a
hidden prompt, piped on standard input, or read from the first line of --patient-id-file.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer

from archive.catalogue import Catalogue, load_vocabulary
from archive.cli.api import (
    AsOption,
    PasswordFileOption,
    TokenFileOption,
    api_client,
    authenticated_person,
    call,
    first_line,
)
from archive.cli.common import HomeOption, JsonOption, emit_json, fail, load, stdin_is_tty
from archive.cli.users import opened
from archive.core import Ports, Refusal
from archive.deid import DeidSecrets
from archive.deid.keyed import pseudonym_for
from archive.errors import ArchiveError
from archive.governance.optout import usecases as optout
from archive.vault import open_keyring_for_cli


def _patient_id(path: Path | None) -> str:
    """The patient ID, never from argv: a file, a hidden prompt, or one stdin line."""
    if path is not None:
        return first_line(path, "patient ID")
    if stdin_is_tty():
        return getpass.getpass("patient ID at the issuer (not shown): ")
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.rstrip("\r\n")


def register(app: typer.Typer) -> None:
    @app.command("withdraw")
    def withdraw(
        home: HomeOption,
        issuer: Annotated[
            str, typer.Option("--issuer", help="Issuer of Patient ID (as the source sent it).")
        ],
        patient_id_file: Annotated[
            Path | None,
            typer.Option(
                "--patient-id-file",
                help="A file whose first line is the patient's ID at that issuer "
                "(otherwise: a hidden prompt, or one line on standard input).",
            ),
        ] = None,
        kind: Annotated[
            str, typer.Option("--kind", help="withdrawal (of consent) or objection.")
        ] = "withdrawal",
        requested_by: Annotated[
            str, typer.Option("--requested-by", help="Who asked (e.g. 'patient', a DPO ref).")
        ] = "patient",
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Remove one patient's cases everywhere and refuse their future studies."""
        config = load(home)
        patient_id = _patient_id(patient_id_file)
        if not issuer.strip() and not patient_id.strip():
            fail("give --issuer and the patient ID as the source system recorded them.")
        if not patient_id.strip():
            fail("the patient ID is empty; give the patient's ID at the issuer.")
        try:
            ring = open_keyring_for_cli(config)
            pseudonym = pseudonym_for(issuer, patient_id, DeidSecrets(ring.pseudonym_key))
        except ArchiveError as exc:
            fail(str(exc))
        del ring
        with opened(home) as (store, log):
            principal = authenticated_person(home, store, user, password_file, token_file,
                                             record=log.append)  # fmt: skip
            ports = Ports(db=store.conn, audit=_SyncAudit(log), policies_dir=config.policies_dir,
                          source="cli", extra={"governance": None})  # fmt: skip
            _done(optout.register_objection(ports, principal, pseudonym))  # ingest refuses now
            catalogue = Catalogue(
                store.conn, config.school_prefix, vocabulary=load_vocabulary(config.policies_dir)
            )
            cases = [c.case_id for c in catalogue.cases_for_pseudonym(pseudonym)]
            removed: list[dict] = []
            if cases:  # the running archive shreds and deletes them, as the same person
                with api_client(home, user, password_file, token_file) as client:
                    answer = call(
                        client, "POST", "/teaching/closure/withdrawals", json={"cases": cases}
                    )
                removed = answer["withdrawn"]
            recorded = _done(optout.record_withdrawal(
                ports, principal, pseudonym, cases, kind=kind, requested_by=requested_by
            ))  # fmt: skip
        done, exposures = recorded.withdrawal, recorded.exposures
        result = {
            "withdrawal_id": done.id,
            "kind": kind,
            "cases": cases,
            "removed": removed,
            "opt_out_registered": True,
            "exposures": exposures,
        }
        if as_json:
            emit_json(result)
            return
        typer.echo(
            f"withdrawal {done.id}: {len(cases)} case(s) removed"
            + (f" ({', '.join(cases)})" if cases else "")
            + "; later studies of this patient will be discarded at ingest."
        )
        if exposures:
            typer.echo("Send deletion requests to:")
            for e in exposures:
                typer.echo(
                    f"  {e['kind']} {e['reference']}: {e.get('to')} "
                    f"(contact {e.get('contact', '-')}) cases {', '.join(e['case_ids'])}"
                )
        else:
            typer.echo("No share, export or workstation carried these cases.")


class _SyncAudit:
    def __init__(self, log) -> None:
        self.log = log

    def append(self, event) -> int:
        return self.log.append(event, sync=True)


def _done(result):
    """A use case's result, or its refusal as one line (reason, then what to do)."""
    if isinstance(result, Refusal):
        fail(f"{result.reason}. {result.next}".strip())
    return result

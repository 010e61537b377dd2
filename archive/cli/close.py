"""`archive close plan|decide|vote|transfer|receipt|confirm|attest-workstation|wipe-node|wipe|...`.

Closure of the suite (issue 10). Records live in the home; the Board's decision and each
member's vote are made by the member themselves, authenticated on the home with their
own password or token (archive.cli.api.authenticated_person; issue 21), and the wipe
confirmations likewise by each staff user. The transfer goes through the running
archive as a staff user (Orthanc sends the C-STOREs).
The wipe runs on a stopped archive only, and only through the governance gate
(ClosureRecords.check_wipe_allowed). Because the audit log lives under the data
directory the wipe deletes, it is exported (with its public key) FIRST; every later step
is audited to the exported copy. The audit signing key stays in this process's memory
only, to sign the certificate at the end of the same run - after the keyring is
destroyed nothing else could sign it. So the certificate's preconditions (every
workstation that received pulls attested wiped) are checked before anything is
destroyed, and `certificate` reads back and verifies what `wipe` wrote.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from archive.audit import AuditError, AuditEvent, AuditLog, verify
from archive.audit.log import LOG_NAME, PUBLIC_KEY_NAME
from archive.cli.api import (
    AsOption,
    PasswordFileOption,
    TokenFileOption,
    api_client,
    authenticated_person,
    call,
)
from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail, load
from archive.cli.recipients import governance
from archive.closure.auditing import hash_for_audit
from archive.core import Ports, Refusal
from archive.errors import ArchiveError
from archive.governance import (
    ClosureRecords,
)
from archive.governance.closure import usecases as closure_uc
from archive.governance.closure.plan import gather_plan, plan_payload
from archive.governance.closure.wipe import (
    CERT_JSON,
    CERT_TEXT,
    PUBLIC_KEY_FILE,
    carry_out_node_wipe,
    carry_out_wipe,
)


def _now() -> datetime:
    return datetime.now(UTC)


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"{option} must be a date as YYYY-MM-DD, not {text!r}.")
        raise  # unreachable: fail exits


def _audit(
    log: AuditLog,
    action: str,
    outcome: str,
    target: str | None = None,
    principal=None,
    /,
    **detail,
) -> None:
    """Audit synchronously; a refused success record stops the command (fail closed).
    A person's act is audited as that authenticated person; machine acts as the
    operator."""
    who = principal.user if principal is not None else actor()
    roles = tuple(principal.roles) if principal is not None else ()
    try:
        log.append(
            AuditEvent(action, outcome, who, roles, source="cli", target=target, detail=detail),
            sync=True,
        )
    except AuditError as exc:
        if outcome == "success":
            fail(f"the audit log refused the record ({exc}); nothing more was done.")


def _votes_line(decision) -> str:
    state = "in force" if decision.in_force else "waiting for members' own votes"
    return f"{decision.quorum_counted} of {decision.quorum_required} members voted; {state}"


@contextmanager
def _records(home: Path):
    with governance(home) as (store, log, policy):
        try:
            yield store, log, ClosureRecords(store.conn, policy), policy
        except ArchiveError as exc:
            fail(str(exc))


# -- the use cases, run locally on the home as the authenticated person ----------------
class _SyncAudit:
    """The audit port of a CLI use case: each record written before the command goes on."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def append(self, event: AuditEvent) -> int:
        return self.log.append(event, sync=True)


def _ports(config, store, log, policy) -> Ports:
    return Ports(db=store.conn, audit=_SyncAudit(log), policies_dir=config.policies_dir,
                 source="cli", extra={"governance": policy})  # fmt: skip


def _done(result):
    """A use case's result, or its refusal as one line (reason, then what to do)."""
    if isinstance(result, Refusal):
        fail(f"{result.reason}. {result.next}".strip())
    return result


def _person(home: Path, store, log, user, password_file, token_file):
    return authenticated_person(home, store, user, password_file, token_file,
                                record=log.append)  # fmt: skip


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Close the suite: plan, Board decision, transfer, wipe, certificate.")
    app.add_typer(sub, name="close")

    @sub.command("plan")
    def plan_cmd(
        home: HomeOption,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """What closing involves: cases and bytes, holders, keys, volumes, backups (the
        same plan as the web page's). As yourself (staff or a Board member), or as the
        operator on the machine when no --as/--token-file is given."""
        config = load(home)
        with _records(home) as (store, log, _records_, policy):
            ports = _ports(config, store, log, policy)
            if user or token_file:  # a person: authorised and audited as them
                principal = _person(home, store, log, user, password_file, token_file)
                plan = _done(closure_uc.plan(ports, principal, config.home, config.volume.kind))
            else:  # the operator on the machine (read only), audited as the OS user
                plan = plan_payload(gather_plan(config.home, store.conn, policy,
                                                volume_kind=config.volume.kind, now=_now()),
                                    config.home)  # fmt: skip
                _audit(log, "closure.plan", "success", cases=plan["cases"], bytes=plan["bytes"],
                       volumes=len(plan["volumes"]))  # fmt: skip
        if as_json:
            emit_json({k: v for k, v in plan.items() if k != "text"})
        else:
            typer.echo(plan["text"], nl=False)
            typer.echo("Keyring backups: " + (", ".join(plan["backup_locations"]) or "none"))

    @sub.command("decide")
    def decide_cmd(
        home: HomeOption,
        outcome: Annotated[str, typer.Option("--outcome", help="transfer or destroy.")],
        meeting_date: Annotated[str, typer.Option("--meeting-date", help="YYYY-MM-DD.")],
        minute: Annotated[str, typer.Option("--minute", help="The minute reference.")],
        text: Annotated[str, typer.Option("--text", help="The decision as minuted.")],
        recipient: Annotated[
            int | None,
            typer.Option("--recipient", help="The receiving Trust teaching collection's id."),
        ] = None,
        approvers: Annotated[
            list[str] | None,
            typer.Option("--approver", hidden=True, help="Removed (issue 21)."),
        ] = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Record the School Board's decision as a member, as yourself (your vote):
        transfer to a named collection, or destroy. In force once a quorum voted."""
        if approvers:
            fail(
                "--approver is no longer accepted: nobody votes in another member's name. "
                "Each member casts their own vote: `archive close vote DECISION --as NAME`."
            )
        config = load(home)
        with _records(home) as (store, log, _r, policy):
            principal = _person(home, store, log, user, password_file, token_file)
            decision = _done(closure_uc.decide(
                _ports(config, store, log, policy), principal, outcome,
                meeting_date=_day(meeting_date, "--meeting-date"), minute_reference=minute,
                decision_text=text, receiving_recipient_id=recipient,
            ))  # fmt: skip
        result = {
            "decision_id": decision.id,
            "outcome": decision.outcome,
            "quorum_counted": decision.quorum_counted,
            "quorum_required": decision.quorum_required,
            "in_force": decision.in_force,
        }
        if as_json:
            emit_json(result)
        else:
            typer.echo(f"closure decision {decision.id} recorded: {decision.outcome} "
                       f"({_votes_line(decision)})")  # fmt: skip

    @sub.command("vote")
    def vote_cmd(
        decision_id: Annotated[int, typer.Argument(help="The closure decision's id.")],
        home: HomeOption,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Cast your own vote, as a Board member, for a recorded closure decision."""
        config = load(home)
        with _records(home) as (store, log, _r, policy):
            principal = _person(home, store, log, user, password_file, token_file)
            decision = _done(closure_uc.vote(_ports(config, store, log, policy), principal,
                                             decision_id))  # fmt: skip
        result = {"decision_id": decision.id, "quorum_counted": decision.quorum_counted,
                  "in_force": decision.in_force}  # fmt: skip
        if as_json:
            emit_json(result)
        else:
            typer.echo(f"closure decision {decision.id}: {_votes_line(decision)}")

    @sub.command("transfer")
    def transfer_cmd(
        home: HomeOption,
        manifest_out: Annotated[
            Path | None, typer.Option("--manifest-out", help="Write the manifest JSON here.")
        ] = None,
        package: Annotated[
            Path | None,
            typer.Option("--package", help="Write a signed transfer package here instead."),
        ] = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Send the whole archive by C-STORE to the Board-named collection (as staff),
        or, with --package, write it as a signed transfer package for `archive import`."""
        if package is not None:  # issue 25: archive/transfer builds and records it
            from archive.cli.transfer import export_package

            made = export_package(home, package, user, password_file, token_file)
            if as_json:
                emit_json(made)
            else:
                typer.echo(f"transfer {made['transfer_id']}: {made['instance_count']} instance(s) "
                           f"packaged for {made['organisation']} in {made['package']}")  # fmt: skip
            return
        load(home)
        with api_client(home, user, password_file, token_file) as client:
            answer = call(client, "POST", "/teaching/closure/transfer", timeout=600)
        if manifest_out is not None:
            manifest_out.write_text(json.dumps(answer, indent=2, sort_keys=True))
        if as_json:
            emit_json(answer)
        else:
            typer.echo(
                f"transfer {answer['transfer_id']}: {answer['instance_count']} instance(s) sent "
                f"to {answer['organisation']}; manifest sha256 {answer['manifest_sha256']}"
            )

    @sub.command("receipt")
    def receipt_cmd(
        home: HomeOption,
        transfer: Annotated[int, typer.Option("--transfer", help="The transfer's id.")],
        received_by: Annotated[str, typer.Option("--received-by", help="Who signed it.")],
        organisation: Annotated[str, typer.Option("--organisation", help="Receiving body.")],
        received_on: Annotated[str, typer.Option("--received-on", help="YYYY-MM-DD.")],
        manifest_sha256: Annotated[
            str | None, typer.Option("--manifest-sha256", help="The manifest hash they quote.")
        ] = None,
        manifest_file: Annotated[
            Path | None, typer.Option("--manifest-file", help="The manifest they returned.")
        ] = None,
        signed_document: Annotated[
            Path | None, typer.Option("--signed-document", help="Their signed receipt file.")
        ] = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Record the receiving collection's receipt (signed manifest, or its hash), as
        yourself (staff)."""
        rows = None
        if manifest_file is not None:
            try:
                raw = json.loads(manifest_file.read_text())
            except (OSError, ValueError) as exc:
                fail(f"cannot read the manifest {manifest_file} ({exc}); give its JSON.")
            groups = raw.get("manifest", raw) if isinstance(raw, dict) else raw
            try:
                rows = [
                    [g["case_id"], i["sop_instance_uid"], i["sha256"]]
                    for g in groups
                    for i in g["instances"]
                ]
            except (KeyError, TypeError):
                fail("the manifest must be the transfer's JSON (case_id, instances).")
        doc_hash = ""
        if signed_document is not None:
            import hashlib

            try:
                doc_hash = hashlib.sha256(signed_document.read_bytes()).hexdigest()
            except OSError as exc:
                fail(f"cannot read {signed_document} ({exc.strerror}).")
        config = load(home)
        with _records(home) as (store, log, _r, policy):
            principal = _person(home, store, log, user, password_file, token_file)
            receipt = _done(closure_uc.receipt(
                _ports(config, store, log, policy), principal, transfer,
                manifest_sha256=manifest_sha256, received_manifest=rows,
                received_by=received_by, organisation=organisation,
                received_on=_day(received_on, "--received-on"),
                signed_document_sha256=doc_hash, stored_ref=str(signed_document or ""),
            ))  # fmt: skip
        if as_json:
            emit_json({"receipt_id": receipt.id, "manifest_sha256": receipt.manifest_sha256})
        else:
            typer.echo(f"receipt {receipt.id} recorded for transfer {transfer}")

    @sub.command("confirm")
    def confirm_cmd(
        home: HomeOption,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Confirm the wipe, as yourself (two different staff users are needed)."""
        config = load(home)
        with _records(home) as (store, log, _r, policy):
            principal = _person(home, store, log, user, password_file, token_file)
            done = _done(closure_uc.confirm_wipe(_ports(config, store, log, policy), principal))
        if as_json:
            emit_json({"confirmation_id": done.id, "user": done.user})
        else:
            typer.echo(f"{done.user} confirmed the wipe (decision {done.decision_id})")

    @sub.command("attest-workstation")
    def attest_cmd(
        home: HomeOption,
        workstation: Annotated[str, typer.Argument(help="The workstation's name.")],
        method: Annotated[str, typer.Option("--method", help="How its drive was wiped.")],
        wiped_at: Annotated[
            str | None, typer.Option("--wiped-at", help="ISO time of the wipe (default now).")
        ] = None,
        attested_by: Annotated[
            str | None, typer.Option("--attested-by", hidden=True, help="Removed (issue 21).")
        ] = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Attest, as yourself (staff), that a workstation's drive was wiped."""
        if attested_by:
            fail("--attested-by is no longer accepted: the person attesting signs in as "
                 "themselves with --as NAME (or --token-file).")  # fmt: skip
        when = None
        if wiped_at:
            try:
                when = datetime.fromisoformat(wiped_at)
                when = when if when.tzinfo else when.replace(tzinfo=UTC)
            except ValueError:
                fail("--wiped-at must be an ISO date-time, e.g. 2025-01-31T14:00:00+00:00.")
        config = load(home)
        with _records(home) as (store, log, _r, policy):
            principal = _person(home, store, log, user, password_file, token_file)
            done = _done(closure_uc.attest_workstation(
                _ports(config, store, log, policy), principal, workstation, method, when
            ))  # fmt: skip
        if as_json:
            emit_json(done.to_dict())
        else:
            typer.echo(f"{done.workstation}: wipe attested by {done.attested_by}")

    @sub.command("wipe")
    def wipe_cmd(
        home: HomeOption,
        export_dir: Annotated[
            Path,
            typer.Option(
                "--export-dir",
                help="New directory OUTSIDE the home for the "
                "audit log, its public key and the certificate.",
            ),
        ],  # fmt: skip
        performed_by: Annotated[str, typer.Option("--performed-by", help="Your name.")],
        validated_by: Annotated[
            str, typer.Option("--validated-by", help="Who validates (not the performer).")
        ],
        title: Annotated[str, typer.Option("--title")] = "Archive administrator",
        validator_title: Annotated[str, typer.Option("--validator-title")] = "School staff",
        organisation: Annotated[str, typer.Option("--organisation")] = "School of Radiology",
        canaries: Annotated[
            list[str] | None,
            typer.Option("--canary", help="A planted value that must not remain (repeat)."),
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Crypto-erase, delete, destroy the volume, verify, and sign the certificate."""
        try:
            result = carry_out_wipe(
                load(home), export_dir, performed_by, validated_by, title, validator_title,
                organisation, [c.encode() for c in canaries or []], operator=actor(),
            )  # fmt: skip
        except ArchiveError as exc:
            fail(str(exc))
        if as_json:
            emit_json(result)
        else:
            dropped = result.get("database")
            if dropped:
                typer.echo(f"database: {dropped['relations']} relation(s), {dropped['schemas']} "
                           f"schema(s), {dropped['large_objects']} large object(s) dropped "
                           f"({dropped['checkpoint']})")  # fmt: skip
            for node in result.get("nodes_wiped") or []:
                typer.echo(f"node on another host wiped before: http {node['http']}")
            typer.echo(
                f"wiped: {result['keys_destroyed']} key(s), {result['files_deleted']} file(s); "
                f"verification {result['verification']}; certificate {result['certificate']}"
            )

    @sub.command("wipe-node")
    def wipe_node_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """Wipe a joined node's home on another host, before `wipe` on the first home.

        On a stopped node's home that `archive node join`ed the archive on PostgreSQL:
        destroy its keyring copy, delete its data (quarantine files included), volume,
        key files and logs, check, and record it signed in the shared audit chain.
        `archive close wipe` refuses while a joined node is not wiped. Same gate as the
        wipe: a decision in force, the receipt, two confirmations."""
        try:
            result = carry_out_node_wipe(load(home), operator=actor())
        except ArchiveError as exc:
            fail(str(exc))
        if as_json:
            emit_json(result)
        else:
            typer.echo(
                f"node wiped: {result['keys_destroyed']} key(s), {result['files_deleted']} "
                f"file(s); verification {result['verification']}. Now run `archive close "
                "wipe` on the archive's first home."
            )

    @sub.command("certificate")
    def certificate_cmd(
        home: HomeOption,
        export_dir: Annotated[Path, typer.Option("--export-dir", help="The wipe's export.")],
        as_json: JsonOption = False,
    ) -> None:
        """Verify and show the signed certificate (signature, audit chain, last checkpoint)."""
        try:
            result = check_certificate(export_dir)
        except ArchiveError as exc:
            fail(str(exc))
        if as_json:
            emit_json(result)
        else:
            typer.echo((export_dir / CERT_TEXT).read_text(), nl=False)
            typer.echo(f"signature valid; sha256 {result['sha256']} is the audit log's last "
                       "checkpointed record")  # fmt: skip


def check_certificate(export_dir: Path) -> dict[str, Any]:
    """Verify an exported certificate: its signature under the exported audit public key,
    the exported audit chain, and that its hash is the last record a checkpoint covers.
    A damaged or incomplete export is one ArchiveError, never a traceback."""
    try:
        return _check_certificate(export_dir)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, OSError) as exc:
        raise ArchiveError(
            f"the certificate export in {export_dir} is incomplete or damaged "
            f"({type(exc).__name__}); it cannot be verified: keep the original copy."
        ) from None


def _check_certificate(export_dir: Path) -> dict[str, Any]:
    import hashlib

    try:
        body = json.loads((export_dir / CERT_JSON).read_text())
        public = bytes.fromhex((export_dir / PUBLIC_KEY_FILE).read_text().strip())
    except (OSError, ValueError) as exc:
        raise ArchiveError(
            f"no readable certificate in {export_dir} ({exc}); run `archive close wipe` first."
        ) from None
    from archive.governance._store import canonical_json

    payload = canonical_json(body["certificate"])
    if hashlib.sha256(payload).hexdigest() != body["sha256"]:
        raise ArchiveError("the certificate's hash does not match its content.")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            bytes.fromhex(body["signature_hex"]), payload
        )
    except (InvalidSignature, ValueError):
        raise ArchiveError("the certificate's signature does not verify.") from None
    report = verify(export_dir / "audit", public)
    if not report.ok:
        raise ArchiveError("the exported audit log does not verify: " + "; ".join(report.problems))
    lines = (export_dir / "audit" / LOG_NAME).read_text().splitlines()
    last, before = json.loads(lines[-1]), json.loads(lines[-2])
    if "checkpoint" not in json.dumps(last) or hash_for_audit(body["sha256"]) not in json.dumps(
        before
    ):
        raise ArchiveError("the certificate's hash is not the audit log's last checkpoint.")
    stored = (export_dir / "audit" / PUBLIC_KEY_NAME).read_text().split()
    return {
        "sha256": body["sha256"],
        "signature_valid": True,
        "audit_records": report.records,
        "audit_checkpoints": report.checkpoints,
        "public_key_matches_log": public.hex() in stored,
        "certificate": body["certificate"],
    }

"""`archive shares propose|list|decide|undertaking|execute|log|revoke|confirm` (issue 9).

Records (proposals, the Board's decision, the signed undertaking, revocation requests
and confirmations) are kept on the home directly by the local operator and audited.
`execute` goes through the running archive's REST API as a named personnel user,
because Orthanc sends the images (C-STORE to the recipient's node, or an age package to
its public key); the governance rules are checked there again, and nothing is sent
without an approved Board decision (quorum, proposer not counted) and a recorded
undertaking.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from archive.cli.api import AsOption, PasswordFileOption, TokenFileOption, api_client, call
from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail, load, stdin_is_tty
from archive.cli.recipients import audit, governance
from archive.cli.users import now, parse_day
from archive.errors import ArchiveError
from archive.governance import Shares, share_log_csv, share_log_json
from archive.governance.board import votes_from_register
from archive.governance.share_delivery import (
    check_undertaking_organisation,
    store_signed_undertaking,
    undertakings_dir,
)
from archive.governance.sharing import proposal_view

ProposalArg = Annotated[int, typer.Argument(help="The share proposal's number.")]


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Third-party shares: proposals, Board decisions, undertakings, the register.",
        no_args_is_help=True,
    )
    app.add_typer(sub, name="shares")

    @sub.command("propose")
    def propose_cmd(
        cases: Annotated[list[str], typer.Argument(help="Case ids to share.")],
        home: HomeOption,
        recipient: Annotated[int, typer.Option("--recipient", help="The recipient's number.")],
        purpose: Annotated[
            str,
            typer.Option(
                "--purpose",
                help="radiology_training, rcr_validated_case_archive, rcr_riti or "
                "archive_transfer.",
            ),
        ],
        proposer: Annotated[
            str | None, typer.Option("--proposer", help="Who proposes it (default: you).")
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Propose a share for the School Board's decision."""
        who = proposer or actor()
        with governance(home) as (store, log, policy):
            try:
                made = Shares(store.conn, policy).propose(cases, recipient, purpose, who, now=now())
            except ArchiveError as exc:
                audit(log, "governance.share.propose", "", "denied", reason=type(exc).__name__)
                fail(str(exc))
            audit(
                log, "governance.share.propose", made.reference, "success",
                recipient_id=recipient, purpose=made.purpose, cases=len(made.case_ids),
                proposer=who,
            )  # fmt: skip
            shown = proposal_view(Shares(store.conn, policy), made.id)
        if as_json:
            emit_json(shown)
        else:
            typer.echo(f"share proposal {made.id} ({made.reference}) recorded for the Board")

    @sub.command("list")
    def list_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """All share proposals with their decision and undertaking."""
        with governance(home) as (store, _, policy):
            shares = Shares(store.conn, policy)
            rows = [proposal_view(shares, p.id) for p in shares.list()]
        if as_json:
            emit_json(rows)
            return
        for r in rows:
            u = "undertaking signed" if r["undertaking"] else "no undertaking"
            typer.echo(
                f"{r['id']:>4} {r['status']:<9} to recipient {r['recipient_id']:<4} "
                f"{r['purpose']:<28} {u:<19} {','.join(r['case_ids'])}"
            )

    @sub.command("decide")
    def decide_cmd(
        proposal_id: ProposalArg,
        home: HomeOption,
        meeting_date: Annotated[str, typer.Option("--meeting-date", help="YYYY-MM-DD.")],
        minute: Annotated[str, typer.Option("--minute", help="The minute reference.")],
        text: Annotated[str, typer.Option("--text", help="The decision as minuted.")],
        approvers: Annotated[
            list[str], typer.Option("--approver", help="A Board member who approved (repeat).")
        ],
        reject: Annotated[bool, typer.Option("--reject", help="The Board refused it.")] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Record the School Board's decision (quorum of members other than the proposer)."""
        when = parse_day(meeting_date, "--meeting-date")
        with governance(home) as (store, log, policy):
            shares = Shares(store.conn, policy)
            try:
                decision = shares.decide(
                    proposal_id,
                    meeting_date=when,
                    minute_reference=minute,
                    approvers=votes_from_register(store, approvers),
                    decision_text=text,
                    approved=not reject,
                    recorded_by=actor(),
                    now=now(),
                )
            except ArchiveError as exc:
                audit(
                    log, "governance.share.decide", f"SHARE-{proposal_id:06d}", "denied",
                    reason=type(exc).__name__,
                )  # fmt: skip
                fail(str(exc))
            audit(
                log, "governance.share.decide", f"SHARE-{proposal_id:06d}", "success",
                decision=decision.outcome, minute=decision.minute_reference,
                counted=decision.quorum_counted, decision_id=decision.id,
            )  # fmt: skip
        if as_json:
            emit_json(decision.to_dict())
        else:
            typer.echo(
                f"share proposal {proposal_id} {decision.outcome} ({decision.reference}; "
                f"{decision.quorum_counted} of {decision.quorum_required} counted)"
            )

    @sub.command("undertaking")
    def undertaking_cmd(
        proposal_id: ProposalArg,
        home: HomeOption,
        out: Annotated[
            Path | None, typer.Option("--out", help="Write the text to sign to this file.")
        ] = None,
        signed: Annotated[
            Path | None, typer.Option("--signed", help="The signed copy (scan or PDF).")
        ] = None,
        signatory: Annotated[str | None, typer.Option("--signatory", help="Who signed.")] = None,
        role: Annotated[str | None, typer.Option("--role", help="The signatory's role.")] = None,
        organisation: Annotated[
            str | None, typer.Option("--organisation", help="On whose behalf.")
        ] = None,
        signed_on: Annotated[
            str | None, typer.Option("--signed-on", help="Date signed, YYYY-MM-DD.")
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Render the undertaking to sign (--out), or record the signed copy (--signed):
        stored encrypted in the vault, its SHA-256 in the register."""
        if (out is None) == (signed is None):
            fail("give --out FILE (text to sign) or --signed FILE (the signed copy).")
        config = load(home)
        if out is not None:
            with governance(home) as (store, log, policy):
                try:
                    text = Shares(store.conn, policy).render_undertaking(proposal_id)
                except ArchiveError as exc:
                    fail(str(exc))
                try:
                    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    fail(f"{out} exists; choose a new file name.")
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                audit(log, "governance.share.undertaking_rendered", f"SHARE-{proposal_id:06d}",
                      "success")  # fmt: skip
            typer.echo(f"wrote {out}: have it signed, then record it with --signed")
            return
        missing = [
            f"--{n}"
            for n, v in (
                ("signatory", signatory),
                ("role", role),
                ("organisation", organisation),
                ("signed-on", signed_on),
            )
            if not v
        ]
        if missing:
            fail(f"recording a signed undertaking needs {', '.join(missing)}.")
        day: date = parse_day(signed_on or "", "--signed-on")
        assert signed is not None
        try:
            data = signed.read_bytes()
        except OSError as exc:
            fail(f"cannot read {signed}: {exc.strerror}.")
        from archive.vault import EncryptedStore
        from archive.vault.passphrase import open_keyring_for_cli

        with governance(home) as (store, log, policy):
            shares = Shares(store.conn, policy)
            target = f"SHARE-{proposal_id:06d}"
            try:
                check_undertaking_organisation(shares, proposal_id, organisation or "")
                ring = open_keyring_for_cli(config, prompt=stdin_is_tty())
                vault = EncryptedStore(undertakings_dir(config.home.data_dir), ring)
                ref, digest = store_signed_undertaking(vault, proposal_id, data)
                u = shares.record_signed_undertaking(
                    proposal_id, digest, signatory or "", role or "", organisation or "", day, ref,
                    recorded_by=actor(), now=now(),
                )  # fmt: skip
            except ArchiveError as exc:
                audit(log, "governance.share.undertaking", target, "denied",
                      reason=type(exc).__name__)  # fmt: skip
                fail(str(exc))
            audit(
                log, "governance.share.undertaking", target, "success",
                undertaking_id=u.id, signed_on=u.signed_on.isoformat(),
            )  # fmt: skip
        result = {
            "undertaking_id": u.id,
            "proposal_id": proposal_id,
            "sha256": u.signed_sha256,
            "stored_ref": u.stored_ref,
            "signatory": u.signatory_name,
            "role": u.signatory_role,
            "organisation": u.organisation,
            "signed_on": u.signed_on.isoformat(),
        }
        if as_json:
            emit_json(result)
        else:
            typer.echo(f"undertaking {u.id} recorded (sha256 {u.signed_sha256}), stored encrypted")

    @sub.command("execute")
    def execute_cmd(
        proposal_id: ProposalArg,
        home: HomeOption,
        method: Annotated[
            str, typer.Option("--method", help="cstore (to its DICOM node) or package.")
        ] = "cstore",
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="The .age package to write.")
        ] = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Send an approved share (personnel, through the running archive); registered."""
        if method not in ("cstore", "package"):
            fail("--method is cstore or package.")
        fd = None
        if method == "package":
            if output is None:
                fail("a package share needs --output FILE.age.")
            try:  # before the share: the archive registers it as sent once it answers
                fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as exc:
                fail(f"cannot create {output} ({exc.strerror}); choose a new file name.")
        written = False
        try:
            with api_client(home, user, password_file, token_file) as client:
                answer = call(client, "POST", f"/teaching/shares/{proposal_id}/execute",
                              json={"method": method})  # fmt: skip
            if fd is not None:
                if not isinstance(answer, bytes):
                    fail("the archive did not answer a package.")
                try:
                    with os.fdopen(fd, "wb") as handle:
                        fd = None
                        handle.write(answer)
                        os.fsync(handle.fileno())
                except OSError as exc:
                    fail(f"the share was sent and registered, but {output} could not be "
                         f"written ({exc.strerror}); see `archive shares log`.")  # fmt: skip
                written = True
                typer.echo(f"wrote {output} ({len(answer)} bytes, age-encrypted to the recipient)")
                return
        finally:
            if fd is not None:
                os.close(fd)
            if output is not None and method == "package" and not written:
                output.unlink(missing_ok=True)
        if as_json:
            emit_json(answer)
        else:
            typer.echo(
                f"share {answer['share_id']}: {answer['instances']} instance(s) sent to "
                f"{answer['destination']} (manifest {answer['manifest_sha256'][:16]}...)"
            )

    @sub.command("log")
    def log_cmd(
        home: HomeOption,
        as_csv: Annotated[bool, typer.Option("--csv", help="CSV for the Board.")] = False,
        as_json: JsonOption = False,
    ) -> None:
        """The share register: what went where, when, on whose authority."""
        with governance(home) as (store, log, policy):
            entries = Shares(store.conn, policy).share_log()
            audit(log, "governance.share.log", "", "success", entries=len(entries))
        if as_csv:
            typer.echo(share_log_csv(entries), nl=False)
        elif as_json:
            typer.echo(share_log_json(entries))
        else:
            for e in entries:
                typer.echo(
                    f"{e['share_id']:>4} {e['executed_at'][:19]} {e['recipient']:<32} "
                    f"{e['method']:<7} {e['instance_count']:>4} inst. {e['proposal']} "
                    f"minute {e['minute_reference']}  {e['status']}"
                )

    @sub.command("revoke")
    def revoke_cmd(
        share_id: Annotated[int, typer.Argument(help="The share's number in the register.")],
        home: HomeOption,
        reason: Annotated[str, typer.Option("--reason", help="Why.")],
        deletion: Annotated[
            bool, typer.Option("--deletion", help="Ask for deletion (default: revocation).")
        ] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Record a revocation or deletion request sent to the recipient."""
        kind = "deletion" if deletion else "revocation"
        with governance(home) as (store, log, policy):
            try:
                rid = Shares(store.conn, policy).request_removal(
                    share_id, kind, reason, actor(), now=now()
                )
            except ArchiveError as exc:
                audit(log, "governance.share.revoke", str(share_id), "denied",
                      reason=type(exc).__name__)  # fmt: skip
                fail(str(exc))
            audit(log, "governance.share.revoke", str(share_id), "success", kind=kind,
                  request_id=rid)  # fmt: skip
        if as_json:
            emit_json({"request_id": rid, "share_id": share_id, "kind": kind})
        else:
            typer.echo(f"{kind} request {rid} recorded for share {share_id}")

    @sub.command("confirm")
    def confirm_cmd(
        request_id: Annotated[int, typer.Argument(help="The revocation/deletion request.")],
        home: HomeOption,
        confirmed_by: Annotated[str, typer.Option("--by", help="Who confirmed, for whom.")],
        confirmed_on: Annotated[str, typer.Option("--on", help="Date, YYYY-MM-DD.")],
        evidence: Annotated[str, typer.Option("--evidence", help="Letter/e-mail reference.")],
        as_json: JsonOption = False,
    ) -> None:
        """Record the recipient's confirmation that it revoked or deleted the images."""
        when = parse_day(confirmed_on, "--on")
        with governance(home) as (store, log, policy):
            try:
                cid = Shares(store.conn, policy).record_confirmation(
                    request_id, confirmed_by, when, evidence, now=now()
                )
            except ArchiveError as exc:
                audit(log, "governance.share.confirm", str(request_id), "denied",
                      reason=type(exc).__name__)  # fmt: skip
                fail(str(exc))
            audit(log, "governance.share.confirm", str(request_id), "success",
                  confirmation_id=cid)  # fmt: skip
        if as_json:
            emit_json({"confirmation_id": cid, "request_id": request_id})
        else:
            typer.echo(f"confirmation {cid} recorded for request {request_id}")

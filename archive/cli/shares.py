"""`archive shares propose|list|decide|vote|undertaking|execute|log|revoke|confirm`.

People act for themselves (issue 21): a proposal, a Board decision, each member's vote
and the recording of a signed undertaking are made over the running archive's REST API
with the acting person's own credentials (--as NAME with a password prompt or
--password-file, or --token-file), never on a typed name. `execute` goes the same way
as a staff user, because Orthanc sends the images; the governance rules are checked
there again, and nothing is sent without a Board decision in force (a quorum of members
other than the proposer who voted themselves) and a recorded undertaking. Revocation
requests and the recipients' confirmations go the same way, as the signed-in person.
"""

from __future__ import annotations

import base64
import os
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from archive.cli.api import AsOption, PasswordFileOption, TokenFileOption, api_client, call
from archive.cli.common import HomeOption, JsonOption, emit_json, fail, load
from archive.cli.recipients import audit, governance
from archive.cli.users import parse_day
from archive.errors import ArchiveError
from archive.governance import Shares, share_log_csv, share_log_json
from archive.governance.sharing.records import proposal_view

ProposalArg = Annotated[int, typer.Argument(help="The share proposal's number.")]
NamedOption = Annotated[
    list[str] | None,
    typer.Option(hidden=True, help="Removed: people act for themselves (issue 21)."),
]


def refuse_named(values, option: str, instead: str) -> None:
    """A removed option that named someone else: one line saying what to use instead."""
    if values:
        fail(f"{option} is no longer accepted: nobody acts in another person's name. {instead}")


def _decision_line(d: dict) -> str:
    state = "in force" if d.get("in_force") else "waiting for members' own votes"
    return (
        f"Board decision {d['id']} ({d['outcome']}, minute {d['minute_reference']}): "
        f"{d['quorum_counted']} of {d['quorum_required']} counted; {state}"
    )


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
        proposer: NamedOption = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Propose a share for the School Board's decision (a member, as themselves)."""
        refuse_named(proposer, "--proposer", "The proposer is whoever signs in: use --as "
                     "with your own password, or --token-file.")  # fmt: skip
        body = {"cases": cases, "recipient_id": recipient, "purpose": purpose}
        with api_client(home, user, password_file, token_file) as client:
            shown = call(client, "POST", "/teaching/shares", json=body)
        if as_json:
            emit_json(shown)
        else:
            typer.echo(f"share proposal {shown['id']} ({shown['reference']}) recorded for the "
                       f"Board by {shown['proposer']}")  # fmt: skip

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
        reject: Annotated[bool, typer.Option("--reject", help="The Board refused it.")] = False,
        approvers: Annotated[
            list[str] | None, typer.Option("--approver", hidden=True, help="Removed (issue 21).")
        ] = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Record the School Board's decision as a member, as yourself (your vote); it is
        in force once a quorum of members other than the proposer voted themselves."""
        refuse_named(approvers, "--approver", "Each member casts their own vote: "
                     f"`archive shares vote {proposal_id} --as NAME`.")  # fmt: skip
        parse_day(meeting_date, "--meeting-date")
        body = {"meeting_date": meeting_date, "minute_reference": minute,
                "decision_text": text, "approved": not reject}  # fmt: skip
        with api_client(home, user, password_file, token_file) as client:
            decision = call(client, "POST", f"/teaching/shares/{proposal_id}/decide", json=body)
        if as_json:
            emit_json(decision)
        else:
            typer.echo(f"share proposal {proposal_id}: {_decision_line(decision)}")

    @sub.command("vote")
    def vote_cmd(
        proposal_id: ProposalArg,
        home: HomeOption,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Cast your own vote for the Board decision recorded on a share proposal."""
        with api_client(home, user, password_file, token_file) as client:
            decision = call(client, "POST", f"/teaching/shares/{proposal_id}/vote", json={})
        if as_json:
            emit_json(decision)
        else:
            typer.echo(f"share proposal {proposal_id}: {_decision_line(decision)}")

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
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Render the undertaking to sign (--out), or record the signed copy (--signed)
        as yourself (a Board member or staff, over REST): stored encrypted in the
        vault, its SHA-256 in the register."""
        if (out is None) == (signed is None):
            fail("give --out FILE (text to sign) or --signed FILE (the signed copy).")
        load(home)
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
        body = {
            "signed_base64": base64.b64encode(data).decode(),
            "signatory": signatory,
            "role": role,
            "organisation": organisation,
            "signed_on": day.isoformat(),
        }
        with api_client(home, user, password_file, token_file) as client:
            shown = call(client, "POST", f"/teaching/shares/{proposal_id}/undertaking", json=body)
        u = shown.get("undertaking") or {}
        result = {
            "undertaking_id": u.get("id"),
            "proposal_id": proposal_id,
            "sha256": u.get("sha256"),
            "signatory": u.get("signatory"),
            "role": u.get("role"),
            "organisation": u.get("organisation"),
            "signed_on": u.get("signed_on"),
        }
        if as_json:
            emit_json(result)
        else:
            typer.echo(f"undertaking {u.get('id')} recorded (sha256 {u.get('sha256')}), "
                       "stored encrypted")  # fmt: skip

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
        """Send an approved share (staff, through the running archive); registered."""
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
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Record, as yourself, a revocation or deletion request sent to the recipient."""
        load(home)
        kind = "deletion" if deletion else "revocation"
        with api_client(home, user, password_file, token_file) as client:
            answer = call(client, "POST", f"/teaching/shares/log/{share_id}/revoke",
                          json={"kind": kind, "reason": reason})  # fmt: skip
        if as_json:
            emit_json({**answer, "kind": kind})
        else:
            typer.echo(f"{kind} request {answer['request_id']} recorded for share {share_id}")

    @sub.command("confirm")
    def confirm_cmd(
        request_id: Annotated[int, typer.Argument(help="The revocation/deletion request.")],
        home: HomeOption,
        officer: Annotated[
            str,
            typer.Option("--recipient-officer", help="Who at the recipient confirmed it."),
        ],
        confirmed_on: Annotated[str, typer.Option("--on", help="Date, YYYY-MM-DD.")],
        evidence: Annotated[str, typer.Option("--evidence", help="Letter/e-mail reference.")],
        by: Annotated[
            str | None, typer.Option("--by", hidden=True, help="Removed (issue 21).")
        ] = None,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Record, as yourself, the recipient's confirmation that it revoked or deleted
        the images (--recipient-officer names their officer, not you)."""
        if by:
            fail(
                "--by is no longer accepted: you record the confirmation signed in as "
                "yourself (--as NAME); name the recipient's officer with --recipient-officer."
            )
        load(home)
        when = parse_day(confirmed_on, "--on")
        body = {"confirmed_by": officer, "confirmed_on": when.isoformat(), "evidence_ref": evidence}
        with api_client(home, user, password_file, token_file) as client:
            answer = call(client, "POST", f"/teaching/shares/requests/{request_id}/confirm",
                          json=body)  # fmt: skip
        if as_json:
            emit_json(answer)
        else:
            typer.echo(
                f"confirmation {answer['confirmation_id']} recorded for request {request_id}"
            )

"""Third-party sharing (issue 9): proposals, Board decisions, undertakings, the register.

Nothing is shared unless (a) the School Board approved it with a quorum of members other
than the proposer, (b) the recipient's signed non-commercial undertaking is recorded, and
(c) every case's level suits the recipient: key-coded (limited-access) cases only to
recipients with a data-sharing agreement on file (RCR guidance), others get
publication-level cases only. The share register answers "what went where, when, on
whose authority" for the Board.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert, select, update

from archive.governance import manifest as mf
from archive.governance import tables as t
from archive.governance._store import (
    clean_case_ids,
    clean_text,
    day,
    ensure_schema,
    parse_ts,
    person_key,
    sha256_hex,
    transaction,
    ts,
)
from archive.governance.board import (
    BoardVote,
    Decision,
    cast_vote,
    check_meeting,
    check_member,
    decisions_on,
    insert_decision,
    load_decision,
    quorum_note,
)
from archive.governance.errors import (
    InvalidInputError,
    LevelRefusedError,
    NotAuthorisedError,
    NotFoundError,
    PurposeRefusedError,
    QuorumError,
    RecipientRefusedError,
    StateError,
    UndertakingMissingError,
    WithdrawnCaseError,
)
from archive.governance.optout.register import withdrawn_among
from archive.governance.policy import GovernancePolicy
from archive.governance.sharing.recipients import Recipient, Recipients, check_kind
from archive.governance.sharing.undertaking import render_undertaking

METHODS = ("cstore", "package")


@dataclass(frozen=True)
class Proposal:
    id: int
    case_ids: tuple[str, ...]
    recipient_id: int
    purpose: str
    proposer: str
    status: str
    created_at: datetime
    policy_version: str

    @property
    def reference(self) -> str:
        return f"SHARE-{self.id:06d}"

    def audit(self) -> dict[str, object]:
        """What the audit record of its proposal says (no case ids: counts)."""
        return {"proposal": self.reference, "recipient_id": self.recipient_id,
                "purpose": self.purpose, "cases": len(self.case_ids)}  # fmt: skip


@dataclass(frozen=True)
class Undertaking:
    id: int
    proposal_id: int
    signed_sha256: str
    signatory_name: str
    signatory_role: str
    organisation: str
    signed_on: date
    stored_ref: str
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True)
class ShareTicket:
    """Permission to send these cases to this recipient under this decision."""

    proposal_id: int
    proposal_reference: str
    recipient: Recipient
    case_ids: tuple[str, ...]
    decision: Decision
    undertaking: Undertaking
    methods: tuple[str, ...]
    issued_at: datetime


class Shares:
    """Proposals, Board decisions, undertakings, authorisation and the share register."""

    def __init__(self, conn: Any, policy: GovernancePolicy) -> None:
        self.conn = conn
        self.policy = policy
        self.recipients = Recipients(conn, policy)
        ensure_schema(conn)

    # -- proposals ----------------------------------------------------------------
    def _check_purpose(self, purpose: str) -> str:
        value = purpose.strip() if isinstance(purpose, str) else ""
        folded = value.casefold()
        if folded in self.policy.refused_share_purposes or "commercial" in folded:
            raise PurposeRefusedError(
                f"purpose {value!r} is refused: images shared with third parties are never "
                "for commercial benefit (school policy, Use of the Image Archive, item 6)."
            )
        if value not in self.policy.share_purposes:
            raise PurposeRefusedError(
                f"purpose {value!r} is not a sharing purpose the policy allows; choose one of "
                f"{', '.join(self.policy.share_purposes)}."
            )
        return value

    def _active_recipient(self, recipient_id: int) -> Recipient:
        recipient = self.recipients.get(recipient_id)
        if not recipient.active:
            raise RecipientRefusedError(
                f"recipient {recipient.id} ({recipient.organisation}) is deactivated; "
                "no further shares go to it."
            )
        check_kind(self.policy, recipient.kind)  # the policy may have changed since
        return recipient

    def propose(
        self,
        case_ids: Sequence[str],
        recipient_id: int,
        purpose: str,
        proposer: BoardVote,
        *,
        case_levels: Mapping[str, str],
        now: datetime,
    ) -> Proposal:
        """A Board member's proposal, made in their own session. Everything that can be
        checked now is (issue 21): the purpose, the recipient, withdrawn cases, and each
        case's de-identification level against the recipient's data-sharing agreement,
        the same rule execution applies again later."""
        ids = clean_case_ids(case_ids)
        purpose = self._check_purpose(purpose)
        if not isinstance(proposer, BoardVote):
            raise TypeError("the proposer is the authenticated member, as a BoardVote")
        if not proposer.roles & self.policy.holders("share.propose"):
            raise NotAuthorisedError(
                f"{proposer.member} is not a School Board member; only members propose shares."
            )
        who = proposer.member
        recipient = self._active_recipient(recipient_id)
        withdrawn = withdrawn_among(self.conn, ids)
        if withdrawn:
            raise WithdrawnCaseError(
                f"case(s) {', '.join(withdrawn)} were withdrawn at the patient's request and "
                "cannot be shared; remove them from the proposal."
            )
        self.check_levels(recipient, ids, case_levels)
        stamp = ts(now)
        with transaction(self.conn) as c:
            cur = c.execute(
                insert(t.share_proposals).values(
                    recipient_id=int(recipient_id),
                    purpose=purpose,
                    proposer=who,
                    status="proposed",
                    created_at=stamp,
                    policy_version=self.policy.version,
                )
            )
            pid = int(cur.lastrowid)
            c.execute(
                insert(t.share_proposal_cases),
                [
                    {"proposal_id": pid, "case_id": cid, "position": n}
                    for n, cid in enumerate(ids, start=1)
                ],
            )
        return self.get(pid)

    def get(self, proposal_id: int) -> Proposal:
        proposals = t.share_proposals
        statement = select(proposals).where(proposals.c.id == int(proposal_id))
        if self.conn.in_transaction:  # a decision on it: the proposal's row is this one's
            statement = statement.with_for_update()
        row = self.conn.execute(statement).fetchone()
        if row is None:
            raise NotFoundError(
                f"share proposal {proposal_id} does not exist; list them with "
                "`archive shares log` or the proposals list."
            )
        pc = t.share_proposal_cases.c
        ids = tuple(
            self.conn.execute(
                select(pc.case_id).where(pc.proposal_id == row["id"]).order_by(pc.position)
            ).scalars()
        )
        return Proposal(
            id=row["id"],
            case_ids=ids,
            recipient_id=row["recipient_id"],
            purpose=row["purpose"],
            proposer=row["proposer"],
            status=row["status"],
            created_at=parse_ts(row["created_at"]),
            policy_version=row["policy_version"],
        )

    def list(self) -> list[Proposal]:
        ids = self.conn.execute(
            select(t.share_proposals.c.id).order_by(t.share_proposals.c.id)
        ).scalars()
        return [self.get(i) for i in ids]

    # -- Board decision ---------------------------------------------------------
    def decide(
        self,
        proposal_id: int,
        *,
        meeting_date: date,
        minute_reference: str,
        decision_text: str,
        approved: bool = True,
        by: BoardVote,
        now: datetime,
    ) -> Decision:
        """Record the Board's decision as minuted, by the member `by` in their own
        session; that is their vote. An approval is in force, and the proposal approved,
        once the policy's quorum of members other than the proposer have voted
        themselves (this one and `vote`). A rejection stands as recorded."""
        stamp = ts(now)
        when, minute = check_meeting(meeting_date, minute_reference, now)
        body = clean_text(decision_text, "decision text")
        check_member(self.policy, by)
        with transaction(self.conn) as c:
            proposal = self.get(proposal_id)
            if proposal.status != "proposed":
                raise StateError(
                    f"share proposal {proposal.id} is already {proposal.status}; "
                    "make a new proposal to revisit it."
                )
            pending = self.decision_for(proposal.id)
            if pending is not None and not pending.in_force:
                raise StateError(
                    f"Board decision {pending.id} on share proposal {proposal.id} is recorded "
                    "and waits for members' votes; vote on it (`archive shares vote "
                    f"{proposal.id}`) instead of recording it again."
                )
            did = insert_decision(
                c,
                subject="share",
                proposal_id=proposal.id,
                outcome="approved" if approved else "rejected",
                meeting_date=date.fromisoformat(when),
                minute_reference=minute,
                decision_text=body,
                quorum_required=self.policy.quorum,
                receiving_recipient_id=proposal.recipient_id,
                recorded_by=by.member,
                stamp=stamp,
                policy_version=self.policy.version,
            )
            counted = cast_vote(c, self.policy, did, by, proposer=proposal.proposer, now=now)
            if not approved:
                status = "rejected"
            elif counted >= self.policy.quorum:
                status = "approved"
            else:
                status = "proposed"
            c.execute(_set_status(proposal.id, status))
        return load_decision(self.conn, did)

    def vote(self, proposal_id: int, *, by: BoardVote, now: datetime) -> Decision:
        """Member `by` approves, in their own session, the decision recorded on this
        proposal; the proposal is approved once enough members have voted themselves."""
        ts(now)
        check_member(self.policy, by)
        with transaction(self.conn) as c:
            proposal = self.get(proposal_id)
            decision = self.decision_for(proposal.id)
            if decision is None:
                raise StateError(
                    f"no Board decision is recorded on share proposal {proposal.id}; a member "
                    f"records it first (`archive shares decide {proposal.id}`)."
                )
            if decision.outcome != "approved":
                raise StateError(
                    f"the Board {decision.outcome} share proposal {proposal.id}; there is "
                    "nothing to vote on."
                )
            counted = cast_vote(c, self.policy, decision.id, by, proposer=proposal.proposer,
                                now=now)  # fmt: skip
            if proposal.status == "proposed" and counted >= self.policy.quorum:
                c.execute(_set_status(proposal.id, "approved"))
        return load_decision(self.conn, decision.id)

    def decision_for(self, proposal_id: int) -> Decision | None:
        found = decisions_on(self.conn, "share", proposal_id)
        return found[-1] if found else None

    # -- undertakings -------------------------------------------------------------
    def render_undertaking(self, proposal_id: int) -> str:
        """The undertaking text for this proposal, from the policy template."""
        proposal = self.get(proposal_id)
        recipient = self.recipients.get(proposal.recipient_id)
        decision = self.decision_for(proposal_id)
        return render_undertaking(
            self.policy.undertaking_template,
            recipient,
            proposal,
            self.policy.school_name,
            kind_label=self.policy.kind_labels.get(recipient.kind),
            decision_reference=decision.reference if decision else None,
        )

    def record_signed_undertaking(
        self,
        proposal_id: int,
        signed_bytes_sha256: str,
        signatory_name: str,
        role: str,
        organisation: str,
        signed_on: date,
        stored_ref: str,
        *,
        recorded_by: str,
        now: datetime,
    ) -> Undertaking:
        """Record the signed copy: its hash and where the vault stored it (encrypted),
        and who signed for which organisation on which date."""
        stamp = ts(now)
        digest = sha256_hex(signed_bytes_sha256, "signed_bytes_sha256")
        name = clean_text(signatory_name, "signatory name", max_len=200)
        title = clean_text(role, "signatory role", max_len=200)
        org = clean_text(organisation, "organisation", max_len=300)
        signed = day(signed_on, "signed_on")
        ref = clean_text(stored_ref, "stored_ref", max_len=500)
        by = clean_text(recorded_by, "recorded_by", max_len=200)
        if signed_on > now.date():
            raise InvalidInputError(
                "signed_on is in the future; record the undertaking once signed."
            )
        proposal = self.get(proposal_id)
        recipient = self.recipients.get(proposal.recipient_id)
        if person_key(org) != person_key(recipient.organisation):
            raise NotAuthorisedError(
                f"the undertaking is signed for {org!r} but the recipient is "
                f"{recipient.organisation!r}; it must be signed on the recipient's behalf."
            )
        if proposal.status in ("rejected", "revoked"):
            raise StateError(f"share proposal {proposal.id} is {proposal.status}.")
        with transaction(self.conn) as c:
            cur = c.execute(
                insert(t.undertakings).values(
                    proposal_id=proposal.id,
                    signed_sha256=digest,
                    signatory_name=name,
                    signatory_role=title,
                    organisation=org,
                    signed_on=signed,
                    stored_ref=ref,
                    recorded_by=by,
                    recorded_at=stamp,
                )
            )
        found = self.undertaking_for(proposal.id)
        assert found is not None and found.id == cur.lastrowid
        return found

    def undertaking_for(self, proposal_id: int) -> Undertaking | None:
        u = t.undertakings
        r = self.conn.execute(
            select(u).where(u.c.proposal_id == int(proposal_id)).order_by(u.c.id.desc()).limit(1)
        ).fetchone()
        if r is None:
            return None
        return Undertaking(
            id=r["id"],
            proposal_id=r["proposal_id"],
            signed_sha256=r["signed_sha256"],
            signatory_name=r["signatory_name"],
            signatory_role=r["signatory_role"],
            organisation=r["organisation"],
            signed_on=date.fromisoformat(r["signed_on"]),
            stored_ref=r["stored_ref"],
            recorded_by=r["recorded_by"],
            recorded_at=parse_ts(r["recorded_at"]),
        )

    # -- authorisation ------------------------------------------------------------
    def _authority(self, proposal: Proposal) -> tuple[Recipient, Decision, Undertaking]:
        """The decision and undertaking a share stands on, or the refusal."""
        decision = self.decision_for(proposal.id)
        if decision is None or decision.outcome != "approved":
            raise StateError(
                f"share proposal {proposal.id} has no approved School Board decision; "
                "record the Board's decision first (`archive shares decide`)."
            )
        if decision.quorum_counted < self.policy.quorum:
            raise QuorumError(
                f"the Board decision on proposal {proposal.id} is not in force: "
                + quorum_note(self.policy, decision.quorum_counted)
            )
        if proposal.status not in ("approved", "shared"):
            raise StateError(f"share proposal {proposal.id} is {proposal.status}; nothing is sent.")
        undertaking = self.undertaking_for(proposal.id)
        if undertaking is None:
            raise UndertakingMissingError(
                f"no signed undertaking is recorded for share proposal {proposal.id}; the "
                "recipient must sign the non-commercial undertaking first "
                "(`archive shares undertaking`)."
            )
        recipient = self._active_recipient(proposal.recipient_id)
        withdrawn = withdrawn_among(self.conn, proposal.case_ids)
        if withdrawn:
            raise WithdrawnCaseError(
                f"case(s) {', '.join(withdrawn)} were withdrawn at the patient's request; the "
                "share is refused. Propose again without them."
            )
        return recipient, decision, undertaking

    def check_levels(
        self, recipient: Recipient, case_ids: Sequence[str], case_levels: Mapping[str, str]
    ) -> None:
        """Key-coded (limited-access) cases only to recipients with a data-sharing
        agreement; others get publication-level cases only. At proposal and execution."""
        missing = [c for c in case_ids if c not in case_levels]
        if missing:
            raise LevelRefusedError(
                f"no de-identification level is known for case(s) {', '.join(missing)}; "
                "check them in the catalogue."
            )
        allowed = self.allowed_levels(recipient)
        bad = {c: case_levels[c] for c in case_ids if case_levels[c] not in allowed}
        if bad:
            listing = ", ".join(f"{c} ({lv})" for c, lv in bad.items())
            if not recipient.data_sharing_agreement:
                raise LevelRefusedError(
                    f"{recipient.organisation} has no data-sharing agreement on file, so only "
                    f"{self.policy.level_publication}-level cases may go to it; refused: "
                    f"{listing}. Record an agreement or have the cases reviewed to publication."
                )
            raise LevelRefusedError(f"these cases may not be shared at their level: {listing}.")

    def allowed_levels(self, recipient: Recipient) -> frozenset[str]:
        if recipient.data_sharing_agreement:
            return self.policy.levels_with_agreement
        return self.policy.levels_without_agreement

    def authorise_share(
        self, proposal_id: int, case_levels: Mapping[str, str], *, now: datetime
    ) -> ShareTicket:
        """All of the rules at once; returns the ticket the sender acts on."""
        stamp = ts(now)
        proposal = self.get(proposal_id)
        recipient, decision, undertaking = self._authority(proposal)
        self.check_levels(recipient, proposal.case_ids, case_levels)
        return ShareTicket(
            proposal_id=proposal.id,
            proposal_reference=proposal.reference,
            recipient=recipient,
            case_ids=proposal.case_ids,
            decision=decision,
            undertaking=undertaking,
            methods=recipient.methods,
            issued_at=parse_ts(stamp),
        )

    # -- execution and register ---------------------------------------------------
    def record_share_execution(
        self,
        proposal_id: int,
        manifest: Sequence[Sequence[str]],
        method: str,
        now: datetime,
        *,
        executed_by: str,
    ) -> int:
        """Enter a completed share in the register, with its full manifest."""
        stamp = ts(now)
        by = clean_text(executed_by, "executed_by", max_len=200)
        if method not in METHODS:
            raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, not {method!r}.")
        entries = mf.normalise(manifest)
        with transaction(self.conn) as c:
            proposal = self.get(proposal_id)
            recipient, decision, undertaking = self._authority(proposal)
            outside = sorted({e.case_id for e in entries} - set(proposal.case_ids))
            if outside:
                raise NotAuthorisedError(
                    f"case(s) {', '.join(outside)} are not in share proposal {proposal.id}; "
                    "the register only records what the Board approved."
                )
            if method not in recipient.methods:
                raise InvalidInputError(
                    f"{recipient.organisation} has no "
                    f"{'DICOM node' if method == 'cstore' else 'public key'} on record."
                )
            destination = (
                str(recipient.dicom_node)
                if method == "cstore"
                else f"age:{(recipient.public_key or '')[:20]}..."
            )
            cur = c.execute(
                insert(t.share_executions).values(
                    proposal_id=proposal.id,
                    decision_id=decision.id,
                    undertaking_id=undertaking.id,
                    method=method,
                    destination=destination,
                    manifest_sha256=mf.manifest_sha256(entries),
                    executed_by=by,
                    executed_at=stamp,
                )
            )
            sid = int(cur.lastrowid)
            if entries:
                c.execute(
                    insert(t.share_items),
                    [
                        {"share_id": sid, "case_id": e.case_id,
                         "sop_instance_uid": e.sop_instance_uid, "sha256": e.sha256}
                        for e in entries
                    ],
                )  # fmt: skip
            c.execute(_set_status(proposal.id, "shared"))
        return sid

    def share_manifest(self, share_id: int) -> list[mf.ManifestEntry]:
        i = t.share_items.c
        rows = self.conn.execute(
            select(i.case_id, i.sop_instance_uid, i.sha256)
            .where(i.share_id == int(share_id))
            .order_by(i.case_id, i.sop_instance_uid)
        )
        return [mf.ManifestEntry(r[0], r[1], r[2]) for r in rows]

    def request_removal(
        self, share_id: int, kind: str, reason: str, requested_by: str, *, now: datetime
    ) -> int:
        """Record a revocation or deletion request sent to the recipient."""
        stamp = ts(now)
        if kind not in ("revocation", "deletion"):
            raise InvalidInputError("kind must be 'revocation' or 'deletion'.")
        why = clean_text(reason, "reason")
        by = clean_text(requested_by, "requested_by", max_len=200)
        with transaction(self.conn) as c:
            row = c.execute(
                select(t.share_executions.c.proposal_id).where(
                    t.share_executions.c.id == int(share_id)
                )
            ).fetchone()
            if row is None:
                raise NotFoundError(f"share {share_id} is not in the register.")
            cur = c.execute(
                insert(t.share_requests).values(
                    share_id=int(share_id),
                    kind=kind,
                    reason=why,
                    requested_by=by,
                    requested_at=stamp,
                )
            )
            if kind == "revocation":
                c.execute(_set_status(row[0], "revoked"))
        return int(cur.lastrowid)

    def record_confirmation(
        self,
        request_id: int,
        confirmed_by: str,
        confirmed_on: date,
        evidence_ref: str,
        *,
        now: datetime,
    ) -> int:
        """Record the recipient's confirmation that a revocation/deletion was carried out."""
        stamp = ts(now)
        who = clean_text(confirmed_by, "confirmed_by", max_len=200)
        when = day(confirmed_on, "confirmed_on")
        ref = clean_text(evidence_ref, "evidence reference", max_len=500)
        with transaction(self.conn) as c:
            if (
                c.execute(
                    select(t.share_requests.c.id).where(t.share_requests.c.id == int(request_id))
                ).fetchone()
                is None
            ):
                raise NotFoundError(f"revocation/deletion request {request_id} does not exist.")
            cur = c.execute(
                insert(t.share_confirmations).values(
                    request_id=int(request_id),
                    confirmed_by=who,
                    confirmed_on=when,
                    evidence_ref=ref,
                    recorded_at=stamp,
                )
            )
        return int(cur.lastrowid)

    def share_log(self) -> list[dict[str, object]]:
        """The register, oldest first: what went where, when, and on whose authority."""
        out: list[dict[str, object]] = []
        executions = t.share_executions
        for row in self.conn.execute(select(executions).order_by(executions.c.id)).fetchall():
            proposal = self.get(row["proposal_id"])
            recipient = self.recipients.get(proposal.recipient_id)
            decision = load_decision(self.conn, row["decision_id"])
            u = self.conn.execute(
                select(t.undertakings).where(t.undertakings.c.id == row["undertaking_id"])
            ).fetchone()
            items = self.share_manifest(row["id"])
            requests = []
            share_requests = t.share_requests
            for r in self.conn.execute(
                select(share_requests)
                .where(share_requests.c.share_id == row["id"])
                .order_by(share_requests.c.id)
            ).fetchall():
                confirmations = [
                    {
                        "confirmed_by": x["confirmed_by"],
                        "confirmed_on": x["confirmed_on"],
                        "evidence_ref": x["evidence_ref"],
                    }
                    for x in self.conn.execute(
                        select(t.share_confirmations)
                        .where(t.share_confirmations.c.request_id == r["id"])
                        .order_by(t.share_confirmations.c.id)
                    )
                ]
                requests.append(
                    {
                        "id": r["id"],
                        "kind": r["kind"],
                        "reason": r["reason"],
                        "requested_by": r["requested_by"],
                        "requested_at": r["requested_at"],
                        "confirmations": confirmations,
                    }
                )
            out.append(
                {
                    "share_id": row["id"],
                    "executed_at": row["executed_at"],
                    "executed_by": row["executed_by"],
                    "method": row["method"],
                    "destination": row["destination"],
                    "recipient_id": recipient.id,
                    "recipient": recipient.organisation,
                    "recipient_kind": recipient.kind,
                    "data_sharing_agreement": recipient.data_sharing_agreement,
                    "proposal": proposal.reference,
                    "purpose": proposal.purpose,
                    "proposer": proposal.proposer,
                    "decision_id": decision.id,
                    "meeting_date": decision.meeting_date.isoformat(),
                    "minute_reference": decision.minute_reference,
                    "approvers": [v.member for v in decision.votes if v.counted],
                    "undertaking_id": u["id"],
                    "undertaking_signatory": f"{u['signatory_name']} ({u['signatory_role']})",
                    "undertaking_signed_on": u["signed_on"],
                    "undertaking_sha256": u["signed_sha256"],
                    "case_ids": sorted({e.case_id for e in items}),
                    "instance_count": len(items),
                    "manifest_sha256": row["manifest_sha256"],
                    "manifest": mf.as_dict(items),
                    "requests": requests,
                    "status": _share_status(requests),
                }
            )
        return out


def _share_status(requests: list[dict]) -> str:
    if not requests:
        return "held by recipient"
    last = requests[-1]
    done = "confirmed" if last["confirmations"] else "requested"
    return f"{last['kind']} {done}"


CSV_COLUMNS = (
    "share_id",
    "executed_at",
    "recipient",
    "recipient_kind",
    "method",
    "destination",
    "purpose",
    "proposal",
    "meeting_date",
    "minute_reference",
    "approvers",
    "undertaking_signatory",
    "undertaking_signed_on",
    "undertaking_sha256",
    "case_ids",
    "instance_count",
    "manifest_sha256",
    "status",
)


def share_log_csv(log: Sequence[Mapping[str, object]]) -> str:
    """The register as CSV for the Board (one row per share; lists joined by ';')."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in log:
        row = []
        for col in CSV_COLUMNS:
            value = entry[col]
            if isinstance(value, list | tuple):
                value = ";".join(str(v) for v in value)
            text = str(value)
            if text[:1] in ("=", "+", "-", "@"):  # no formula injection in a spreadsheet
                text = "'" + text
            row.append(text)
        writer.writerow(row)
    return buf.getvalue()


def share_log_json(log: Sequence[Mapping[str, object]]) -> str:
    return json.dumps(list(log), indent=2, sort_keys=True)


def proposal_view(shares: Shares, pid: int) -> dict:
    """A proposal with its decision and undertaking, as the CLI and REST show it."""
    p = shares.get(pid)
    decision = shares.decision_for(pid)
    u = shares.undertaking_for(pid)
    return {
        "id": p.id,
        "reference": p.reference,
        "case_ids": list(p.case_ids),
        "recipient_id": p.recipient_id,
        "purpose": p.purpose,
        "proposer": p.proposer,
        "status": p.status,
        "created_at": p.created_at.isoformat(),
        "decision": None if decision is None else decision.to_dict(),
        "undertaking": None
        if u is None
        else {
            "id": u.id,
            "sha256": u.signed_sha256,
            "signatory": u.signatory_name,
            "role": u.signatory_role,
            "organisation": u.organisation,
            "signed_on": u.signed_on.isoformat(),
        },
    }


def shares_carrying(conn: Any, case_ids: Sequence[str]) -> list[dict[str, object]]:
    """Every executed share that carried any of these cases, with its recipient and
    contact (for the opt-out workflow: where deletion requests must go)."""
    i, e, p, r = t.share_items, t.share_executions, t.share_proposals, t.recipients
    rows = conn.execute(
        select(
            e.c.id, e.c.executed_at, e.c.method, e.c.destination, r.c.organisation,
            r.c.contact, i.c.case_id,
        )
        .join_from(i, e, e.c.id == i.c.share_id)
        .join(p, p.c.id == e.c.proposal_id)
        .join(r, r.c.id == p.c.recipient_id)
        .where(i.c.case_id.in_(list(case_ids)))
        .order_by(e.c.id)
    ).fetchall()  # fmt: skip
    shares: dict[int, dict[str, object]] = {}
    for sid, when, method, destination, organisation, contact, case_id in rows:
        share = shares.setdefault(sid, {
            "kind": "share",
            "reference": f"share {sid}",
            "share_id": sid,
            "when": when,
            "to": organisation,
            "contact": contact,
            "method": method,
            "destination": destination,
            "case_ids": [],
        })  # fmt: skip
        if case_id not in share["case_ids"]:  # type: ignore[operator]
            share["case_ids"].append(case_id)  # type: ignore[union-attr]
    for share in shares.values():
        share["case_ids"] = sorted(share["case_ids"])  # type: ignore[arg-type]
    return list(shares.values())


def _set_status(proposal_id: int, status: str) -> Any:
    proposals = t.share_proposals
    return update(proposals).where(proposals.c.id == proposal_id).values(status=status)

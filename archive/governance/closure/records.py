"""Closure of the suite (issue 10): plan, Board decision, transfer, receipt, wipe gate.

School policy (seed 002, "Image Disposal"): if the suite closes, the archive goes to
another Trust teaching collection as the School Board decides, and the workstations'
drives are wiped. The wipe is irreversible, so it is refused unless the archive is
safely elsewhere (a transfer receipt whose manifest hash matches what was sent) or the
Board decided to destroy it, and two different staff confirm. The certificate is
final only once every workstation that received pulls is attested wiped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from archive.governance import manifest as mf
from archive.governance import tables as t
from archive.governance._store import (
    clean_roles,
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
    decision_subject,
    decisions_on,
    insert_decision,
    load_decision,
)
from archive.governance.closure.certificate import (
    SignedCertificate,
    WipeCertificate,
    sign_certificate,
)
from archive.governance.errors import (
    CertificateError,
    InvalidInputError,
    NotAuthorisedError,
    NotFoundError,
    RecipientRefusedError,
    StateError,
    WipeRefusedError,
)
from archive.governance.policy import GovernancePolicy
from archive.governance.pulls import PullInventory
from archive.governance.sharing.recipients import Recipients

OUTCOMES = ("transfer", "destroy")


# -- the plan ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ClosureInputs:
    """What the other rooms report, as plain data."""

    case_count: int
    instance_count: int
    bytes_total: int
    workstation_inventory: Mapping[str, Sequence[str]] = field(default_factory=dict)
    open_shares: Sequence[Mapping[str, object]] = ()
    open_exports: Sequence[Mapping[str, object]] = ()
    keys: Sequence[Mapping[str, object]] = ()
    volumes: Sequence[Mapping[str, object]] = ()


@dataclass(frozen=True)
class ClosurePlan:
    case_count: int
    instance_count: int
    bytes_total: int
    workstations: dict[str, list[str]]
    open_shares: list[dict[str, object]]
    open_exports: list[dict[str, object]]
    keys: list[dict[str, object]]
    volumes: list[dict[str, object]]
    actions: list[str]

    def to_dict(self) -> dict[str, object]:
        return {
            "cases": self.case_count,
            "instances": self.instance_count,
            "bytes": self.bytes_total,
            "workstations": self.workstations,
            "open_shares": self.open_shares,
            "open_exports": self.open_exports,
            "keys": self.keys,
            "volumes": self.volumes,
            "actions": self.actions,
        }

    def render_text(self) -> str:
        gib = self.bytes_total / 2**30
        lines = [
            "CLOSURE PLAN",
            f"Archive: {self.case_count} cases, {self.instance_count} instances, "
            f"{self.bytes_total} bytes ({gib:.2f} GiB)",
            f"Workstations holding pulled cases: {len(self.workstations)}",
        ]
        lines += [f"  {ws}: {len(c)} case(s)" for ws, c in self.workstations.items()]
        lines.append(f"Open shares: {len(self.open_shares)}")
        lines += [f"  {_one_line(s)}" for s in self.open_shares]
        lines.append(f"Open exports: {len(self.open_exports)}")
        lines += [f"  {_one_line(x)}" for x in self.open_exports]
        lines.append(f"Keys to destroy: {len(self.keys)}")
        lines += [f"  {_one_line(k)}" for k in self.keys]
        lines.append(f"Volumes to destroy: {len(self.volumes)}")
        lines += [f"  {_one_line(v)}" for v in self.volumes]
        lines.append("Steps:")
        lines += [f"  {n}. {a}" for n, a in enumerate(self.actions, start=1)]
        return "\n".join(lines) + "\n"


def _one_line(item: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(item.items()))


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{name} must be a whole number of at least 0.")
    return value


def closure_plan(inputs: ClosureInputs) -> ClosurePlan:
    """Everything that must happen before the archive can be wiped, in order."""
    cases = _count(inputs.case_count, "case_count")
    instances = _count(inputs.instance_count, "instance_count")
    size = _count(inputs.bytes_total, "bytes_total")
    ws = {
        str(k): sorted(str(c) for c in v) for k, v in sorted(inputs.workstation_inventory.items())
    }
    ws = {k: v for k, v in ws.items() if v}
    actions = [
        "Record the School Board's decision: transfer to a named Trust teaching collection, "
        "or destroy (`archive close transfer` / Board minute)."
    ]
    if cases:
        actions.append(
            f"If transferring: send all {instances} instances with a SHA-256 manifest and "
            "record the receiving collection's signed receipt."
        )
    if inputs.open_shares:
        actions.append(
            f"Tell the recipients of {len(inputs.open_shares)} open share(s) the archive is "
            "closing; their undertakings still bind them."
        )
    if inputs.open_exports:
        actions.append(f"Revoke or let lapse {len(inputs.open_exports)} open export approval(s).")
    actions.append(
        "Export the audit log and keep it with the certificate: they outlive the archive."
    )
    actions.append("Two different staff confirm the wipe (`archive close wipe`).")
    actions.append(
        f"Crypto-erase: destroy {len(inputs.keys)} key(s) and every keyring backup; "
        "then delete the ciphertext"
        + (f" and destroy {len(inputs.volumes)} volume(s)." if inputs.volumes else ".")
    )
    if ws:
        actions.append(
            f"Wipe and attest {len(ws)} workstation(s) ({', '.join(ws)}) before the certificate "
            "is final."
        )
    actions.append("Verify, then sign the certificate with the audit key.")
    return ClosurePlan(
        case_count=cases,
        instance_count=instances,
        bytes_total=size,
        workstations=ws,
        open_shares=[dict(s) for s in inputs.open_shares],
        open_exports=[dict(x) for x in inputs.open_exports],
        keys=[dict(k) for k in inputs.keys],
        volumes=[dict(v) for v in inputs.volumes],
        actions=actions,
    )


# -- records -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Transfer:
    id: int
    decision_id: int
    method: str
    manifest_sha256: str
    instance_count: int
    executed_by: str
    executed_at: datetime


@dataclass(frozen=True)
class Receipt:
    id: int
    transfer_id: int
    manifest_sha256: str
    signed_document_sha256: str
    stored_ref: str
    received_by: str
    organisation: str
    received_on: date
    recorded_at: datetime


@dataclass(frozen=True)
class WipeConfirmation:
    id: int
    decision_id: int
    user: str
    role: str
    confirmed_at: datetime


@dataclass(frozen=True)
class WipeAuthorisation:
    id: int
    decision_id: int
    confirmers: tuple[str, ...]
    authorised_at: datetime


class ClosureRecords:
    """The closure's written trail and the gate in front of the wipe."""

    def __init__(self, conn: Any, policy: GovernancePolicy) -> None:
        self.conn = conn
        self.policy = policy
        self.recipients = Recipients(conn, policy)
        ensure_schema(conn)

    # -- decision ---------------------------------------------------------------------
    def record_decision(
        self,
        outcome: str,
        *,
        meeting_date: date,
        minute_reference: str,
        decision_text: str,
        receiving_recipient_id: int | None = None,
        by: BoardVote,
        now: datetime,
    ) -> Decision:
        """The Board's decision on the archive's fate, recorded by member `by` in their
        own session (their vote). It is in force once the policy's quorum of members
        voted themselves (`vote`); a later decision in force supersedes it."""
        stamp = ts(now)
        if outcome not in OUTCOMES:
            raise InvalidInputError(f"the outcome must be one of {', '.join(OUTCOMES)}.")
        when, minute = check_meeting(meeting_date, minute_reference, now)
        body = clean_text(decision_text, "decision text")
        check_member(self.policy, by, "closure.vote")
        if outcome == "transfer":
            if receiving_recipient_id is None:
                raise InvalidInputError(
                    "a transfer decision must name the receiving Trust teaching collection "
                    "(register it with `archive recipients add`)."
                )
            recipient = self.recipients.get(receiving_recipient_id)
            if recipient.kind not in self.policy.transfer_recipient_kinds or not recipient.active:
                raise RecipientRefusedError(
                    f"{recipient.organisation} is a {recipient.kind}; the archive may only be "
                    "transferred to an active "
                    f"{' or '.join(sorted(self.policy.transfer_recipient_kinds))} "
                    "(school policy, Image Disposal)."
                )
        elif receiving_recipient_id is not None:
            raise InvalidInputError("a decision to destroy names no receiving collection.")
        with transaction(self.conn) as c:
            did = insert_decision(
                c,
                subject="closure",
                proposal_id=None,
                outcome=outcome,
                meeting_date=date.fromisoformat(when),
                minute_reference=minute,
                decision_text=body,
                quorum_required=self.policy.quorum,
                receiving_recipient_id=receiving_recipient_id,
                recorded_by=by.member,
                stamp=stamp,
                policy_version=self.policy.version,
            )
            cast_vote(c, self.policy, did, by, proposer=None, now=now, action="closure.vote")
        return load_decision(self.conn, did)

    def vote(self, decision_id: int, *, by: BoardVote, now: datetime) -> Decision:
        """Member `by`, in their own session, votes for closure decision `decision_id`."""
        ts(now)
        check_member(self.policy, by, "closure.vote")
        with transaction(self.conn) as c:
            subject, _ = decision_subject(c, decision_id)
            if subject != "closure":
                raise NotFoundError(
                    f"Board decision {decision_id} is not a closure decision; vote on shares "
                    "with `archive shares vote`."
                )
            cast_vote(
                c, self.policy, decision_id, by, proposer=None, now=now, action="closure.vote"
            )
        return load_decision(self.conn, decision_id)

    def decisions(self) -> list[Decision]:
        """Every closure decision recorded, in force or waiting for votes, oldest first."""
        return decisions_on(self.conn, "closure")

    def current_decision(self) -> Decision | None:
        """The latest closure decision in force (enough members voted themselves)."""
        for decision in reversed(self.decisions()):
            if decision.quorum_counted >= max(decision.quorum_required, self.policy.quorum):
                return decision
        return None

    def _decision(self, outcome: str | None = None) -> Decision:
        decision = self.current_decision()
        if decision is None:
            raise StateError(
                "no School Board decision on the archive's closure is in force; a member "
                "records it (`archive close decide`) and enough members vote for it "
                "(`archive close vote`)."
            )
        if outcome is not None and decision.outcome != outcome:
            raise StateError(
                f"the Board decided to {decision.outcome} the archive, not to {outcome} it."
            )
        return decision

    # -- transfer and receipt -----------------------------------------------------------
    def record_transfer(
        self,
        manifest: Sequence[Sequence[str]],
        method: str,
        *,
        executed_by: str,
        now: datetime,
    ) -> Transfer:
        """Record the whole archive sent to the receiving collection, with its manifest."""
        stamp = ts(now)
        by = clean_text(executed_by, "executed_by", max_len=200)
        if method not in ("cstore", "package"):
            raise InvalidInputError("method must be 'cstore' or 'package'.")
        decision = self._decision("transfer")
        assert decision.receiving_recipient_id is not None
        recipient = self.recipients.get(decision.receiving_recipient_id)
        if method not in recipient.methods:
            raise InvalidInputError(
                f"{recipient.organisation} has no "
                f"{'DICOM node' if method == 'cstore' else 'public key'} on record."
            )
        entries = mf.normalise(manifest)
        digest = mf.manifest_sha256(entries)
        with transaction(self.conn) as c:
            cur = c.execute(
                insert(t.closure_transfers).values(
                    decision_id=decision.id,
                    method=method,
                    manifest_sha256=digest,
                    instance_count=len(entries),
                    executed_by=by,
                    executed_at=stamp,
                )
            )
            tid = int(cur.lastrowid)
            if entries:
                c.execute(
                    insert(t.closure_transfer_items),
                    [
                        {"transfer_id": tid, "case_id": e.case_id,
                         "sop_instance_uid": e.sop_instance_uid, "sha256": e.sha256}
                        for e in entries
                    ],
                )  # fmt: skip
        return self.transfer(tid)

    def transfer(self, transfer_id: int) -> Transfer:
        r = self.conn.execute(
            select(t.closure_transfers).where(t.closure_transfers.c.id == int(transfer_id))
        ).fetchone()
        if r is None:
            raise NotFoundError(f"closure transfer {transfer_id} does not exist.")
        return Transfer(
            r["id"],
            r["decision_id"],
            r["method"],
            r["manifest_sha256"],
            r["instance_count"],
            r["executed_by"],
            parse_ts(r["executed_at"]),
        )

    def transfer_manifest(self, transfer_id: int) -> list[mf.ManifestEntry]:
        i = t.closure_transfer_items.c
        rows = self.conn.execute(
            select(i.case_id, i.sop_instance_uid, i.sha256)
            .where(i.transfer_id == int(transfer_id))
            .order_by(i.case_id, i.sop_instance_uid)
        )
        return [mf.ManifestEntry(*r) for r in rows]

    def record_receipt(
        self,
        transfer_id: int,
        *,
        manifest_sha256: str | None = None,
        received_manifest: Sequence[Sequence[str]] | None = None,
        received_by: str,
        organisation: str,
        received_on: date,
        signed_document_sha256: str = "",
        stored_ref: str = "",
        recorded_by: str,
        now: datetime,
    ) -> Receipt:
        """Record the receiving collection's receipt. It must quote back the manifest we
        sent (its hash, or the manifest itself); a mismatch is refused, because a wipe
        would then destroy instances the receiver does not hold."""
        stamp = ts(now)
        transfer = self.transfer(transfer_id)
        if received_manifest is not None:
            quoted = mf.manifest_sha256(mf.normalise(received_manifest))
        elif manifest_sha256 is not None:
            quoted = sha256_hex(manifest_sha256, "manifest_sha256")
        else:
            raise InvalidInputError(
                "a receipt must give the manifest the receiver holds, or its SHA-256."
            )
        if quoted != transfer.manifest_sha256:
            raise StateError(
                f"the receipt's manifest ({quoted[:12]}...) does not match transfer "
                f"{transfer.id} ({transfer.manifest_sha256[:12]}...); reconcile and resend "
                "the missing instances before recording the receipt."
            )
        decision = load_decision(self.conn, transfer.decision_id)
        assert decision.receiving_recipient_id is not None
        recipient = self.recipients.get(decision.receiving_recipient_id)
        org = clean_text(organisation, "organisation", max_len=300)
        if person_key(org) != person_key(recipient.organisation):
            raise NotAuthorisedError(
                f"the receipt comes from {org!r}, but the Board named "
                f"{recipient.organisation!r} as the receiving collection."
            )
        who = clean_text(received_by, "received_by", max_len=200)
        on = day(received_on, "received_on")
        doc = (
            sha256_hex(signed_document_sha256, "signed_document_sha256")
            if signed_document_sha256
            else ""
        )
        by = clean_text(recorded_by, "recorded_by", max_len=200)
        with transaction(self.conn) as c:
            cur = c.execute(
                insert(t.closure_receipts).values(
                    transfer_id=transfer.id,
                    manifest_sha256=quoted,
                    signed_document_sha256=doc,
                    stored_ref=stored_ref.strip(),
                    received_by=who,
                    organisation=org,
                    received_on=on,
                    recorded_by=by,
                    recorded_at=stamp,
                )
            )
        return Receipt(
            int(cur.lastrowid),
            transfer.id,
            quoted,
            doc,
            stored_ref.strip(),
            who,
            org,
            received_on,
            parse_ts(stamp),
        )

    def _receipt_for(self, decision: Decision) -> int | None:
        receipts, transfers = t.closure_receipts, t.closure_transfers
        found = self.conn.execute(
            select(receipts.c.id)
            .join_from(receipts, transfers, transfers.c.id == receipts.c.transfer_id)
            .where(transfers.c.decision_id == decision.id)
            .order_by(receipts.c.id.desc())
            .limit(1)
        ).scalar()
        return None if found is None else int(found)

    # -- the wipe gate ----------------------------------------------------------------------
    def confirm_wipe(self, user: str, roles: Sequence[str], *, now: datetime) -> WipeConfirmation:
        """One person's confirmation, tied to the current decision; only staff."""
        stamp = ts(now)
        who = clean_text(user, "user", max_len=200)
        held = clean_roles(roles)
        allowed = self.policy.holders("closure.confirm_wipe")
        role = next((r for r in sorted(allowed) if r in held), None)
        if role is None:
            raise NotAuthorisedError(
                f"{who} cannot confirm the wipe: only school staff "
                "(closure.confirm_wipe in policies/access/actions.toml) may."
            )
        decision = self._decision()
        with transaction(self.conn) as c:
            cur = c.execute(
                insert(t.wipe_confirmations).values(
                    decision_id=decision.id,
                    user=who,
                    user_key=person_key(who),
                    role=role,
                    confirmed_at=stamp,
                )
            )
        return WipeConfirmation(int(cur.lastrowid), decision.id, who, role, parse_ts(stamp))

    def _valid_confirmers(self, decision: Decision, now: datetime) -> list[str]:
        """Distinct people who confirmed this decision's wipe recently enough."""
        since = ts(now - timedelta(hours=self.policy.wipe_confirmation_valid_hours))
        w = t.wipe_confirmations.c
        rows = self.conn.execute(
            select(w.user, w.user_key)
            .where(w.decision_id == decision.id, w.confirmed_at >= since, w.confirmed_at <= ts(now))
            .order_by(w.id)
        )
        people: dict[str, str] = {}
        for user, key in rows:
            people.setdefault(key, user)
        return list(people.values())

    def check_wipe_allowed(self, now: datetime) -> None:
        """Raise WipeRefusedError with every unmet precondition; return None if allowed."""
        ts(now)
        reasons: list[str] = []
        decision = self.current_decision()
        if decision is None:
            reasons.append(
                "no School Board decision (transfer or destroy) is in force (recorded and "
                "voted by a quorum of members themselves)"
            )
        elif decision.outcome == "transfer" and self._receipt_for(decision) is None:
            reasons.append(
                "the Board decided to transfer the archive and no receipt from the receiving "
                "collection is recorded"
            )
        confirmers = self._valid_confirmers(decision, now) if decision else []
        need = self.policy.wipe_confirmations_required
        if len(confirmers) < need:
            reasons.append(
                f"{need} different staff must confirm within "
                f"{self.policy.wipe_confirmation_valid_hours} h; "
                f"{len(confirmers)} did ({', '.join(confirmers) or 'nobody'})"
            )
        if reasons:
            raise WipeRefusedError("the wipe is refused: " + "; ".join(reasons) + ".")

    def authorise_wipe(self, now: datetime) -> WipeAuthorisation:
        """Check the gate and record who authorised the wipe; the vault wipes only with it."""
        stamp = ts(now)
        with transaction(self.conn) as c:
            self.check_wipe_allowed(now)
            decision = self._decision()
            confirmers = self._valid_confirmers(decision, now)
            cur = c.execute(
                insert(t.wipe_authorisations).values(
                    decision_id=decision.id, confirmers=json.dumps(confirmers), authorised_at=stamp
                )
            )
        return WipeAuthorisation(
            int(cur.lastrowid), decision.id, tuple(confirmers), parse_ts(stamp)
        )

    def latest_authorisation(self) -> WipeAuthorisation | None:
        authorisations = t.wipe_authorisations
        r = self.conn.execute(
            select(authorisations).order_by(authorisations.c.id.desc()).limit(1)
        ).fetchone()
        if r is None:
            return None
        return WipeAuthorisation(
            r["id"],
            r["decision_id"],
            tuple(json.loads(r["confirmers"])),
            parse_ts(r["authorised_at"]),
        )

    # -- certificate ----------------------------------------------------------------------
    def certificate_blockers(self, pulls: PullInventory) -> list[str]:
        """What still stops the certificate from being final."""
        out = []
        if self.latest_authorisation() is None:
            out.append("no wipe was authorised (two staff confirmations and the gate)")
        pending = pulls.workstations_needing_wipe()
        if pending:
            out.append(f"workstation(s) not attested wiped: {', '.join(pending)}")
        return out

    def finalise_certificate(
        self,
        certificate: WipeCertificate,
        sign: Callable[[bytes], bytes],
        *,
        pulls: PullInventory,
        now: datetime,
    ) -> SignedCertificate:
        """Sign and record the certificate once every workstation is attested wiped.

        The certificate must carry the attestation of each workstation that received
        pulls, so a reader sees the drives were wiped too."""
        stamp = ts(now)
        blockers = self.certificate_blockers(pulls)
        if blockers:
            raise CertificateError(
                "the certificate cannot be final yet: " + "; ".join(blockers) + "."
            )
        listed = {str(a.get("workstation")) for a in certificate.workstation_attestations}
        latest = pulls.latest_attestations()
        pulled = {str(p["workstation"]) for p in pulls.pulls()}
        missing = sorted(pulled - listed)
        if missing:
            raise CertificateError(
                f"the certificate omits the wipe attestation of {', '.join(missing)}; "
                "include `PullInventory.latest_attestations()`."
            )
        unknown = sorted(listed - set(latest))
        if unknown:
            raise CertificateError(
                f"the certificate lists attestations not on record for {', '.join(unknown)}."
            )
        auth = self.latest_authorisation()
        assert auth is not None
        signed = sign_certificate(certificate, sign)
        with transaction(self.conn) as c:
            c.execute(
                insert(t.wipe_certificates).values(
                    authorisation_id=auth.id,
                    certificate_sha256=signed.sha256,
                    signature_hex=signed.signature.hex(),
                    finalised_at=stamp,
                )
            )
        return signed

"""Third-party sharing as use cases (issue 21): each act by the authenticated person.

Every function takes the ports and the authenticated principal (never a typed name),
authorises one action of policies/access/actions.toml, acts in one transaction, audits
once and returns its result or a Refusal (archive.governance.usecase.run). The REST
routes, the web pages and the CLI call these and only encode the answer.

    propose       share.propose      a Board member proposes; everything that can be
                                     checked now is (purpose, recipient, withdrawn cases,
                                     each case's level against the recipient's agreement)
    decide        share.vote         a member records the Board's decision: their vote
    vote          share.vote         each other member votes for themselves
    undertaking   share.undertaking  the recipient's signed undertaking is recorded
    revoke        share.revoke       a revocation or deletion request sent to a recipient
    confirm       share.revoke       the recipient's confirmation that it was carried out
    prepare/finish_execution share.execute   (the sending happens between, outside the
                                     transaction: see execute_share)
    add/agreement/deactivate_recipient  recipient.manage
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select

from archive.access.principal import Principal
from archive.core import Ports, Refusal, Resource, authorise
from archive.errors import ArchiveError
from archive.governance import tables
from archive.governance.board import BoardVote, Decision
from archive.governance.sharing.delivery import (
    check_undertaking_organisation,
    store_signed_undertaking,
)
from archive.governance.sharing.recipients import DicomNode, Recipient, Recipients
from archive.governance.sharing.records import Proposal, Shares, ShareTicket, proposal_view
from archive.governance.usecase import (
    audit_outcome,
    audit_refusal,
    levels_of,
    now,
    policy,
    refusal_of,
    refuse,
    released_cases,
    run,
)
from archive.ingest.flags import refuse_face_holds

NAMED_KEYS = ("approvers", "approver", "voters", "members", "recorded_by", "proposer")


def reference(proposal_id: int) -> str:
    return f"SHARE-{int(proposal_id):06d}"


def _shares(ports: Ports) -> Shares:
    return Shares(ports.db, policy(ports))


def refuse_named(action: str, fields: dict[str, Any]) -> None:
    """People act for themselves: naming other voters is refused, never counted."""
    for key in NAMED_KEYS:
        if key in fields:
            raise refuse(
                action,
                f'"{key}" is not accepted: each Board member votes in their own session, '
                "and the archive records who is signed in.",
                "Leave it out; every other member casts their own vote "
                "(POST /teaching/shares/N/vote, the web form, or `archive shares vote N`).",
            )


def _proposal(kind: str = "share proposal"):
    """A resource reader: the proposal's state, under the use case's transaction."""

    def read(pid: int) -> Callable[[Any], Resource]:
        def resource(tx) -> Resource:
            proposals = tables.share_proposals
            row = tx.execute(
                select(proposals.c.status, proposals.c.proposer)
                .where(proposals.c.id == pid)
                .with_for_update()  # the state authorised on is the state the act changes
            ).fetchone()
            if row is None:
                raise refuse(
                    "share", f"{kind} {pid} does not exist.",
                    "List them with `archive shares list`.", "not_found",
                )  # fmt: skip
            return Resource(kind, reference(pid), state=row[0], requester=row[1])

        return resource

    return read


_state = _proposal()


def _named_first(action: str, fields: dict[str, Any] | None, pid: int):
    """A body naming other voters is refused before anything else is judged (it is a
    malformed request whatever the proposal's state), and audited like any refusal."""
    read = _state(pid)

    def resource(tx) -> Resource:
        refuse_named(action, fields or {})
        return read(tx)

    return resource


# -- proposals and the Board ------------------------------------------------------------
def propose(
    ports: Ports,
    principal: Principal | None,
    case_ids: Sequence[str],
    recipient_id: int,
    purpose: str,
    *,
    fields: dict[str, Any] | None = None,
) -> Proposal | Refusal:
    action = "share.propose"

    shares = _shares(ports)

    def act(tx, permit) -> Proposal:
        refuse_named(action, fields or {})
        if isinstance(recipient_id, bool) or not isinstance(recipient_id, int):
            raise refuse(action, "give the recipient's number.", "See `archive recipients list`.")
        cases = released_cases(ports, action, list(case_ids or []))
        refuse_face_holds(ports, action, cases, "share")  # issue 24: faces
        levels = levels_of(cases)
        return shares.propose(
            list(levels), recipient_id, purpose, BoardVote.of_principal(principal),
            case_levels=levels, now=now(ports),
        )  # fmt: skip

    return run(ports, principal, action, Resource("share proposal"), act,
               event="governance.share.propose")  # fmt: skip


@dataclass(frozen=True)
class Voted:
    decision: Decision
    proposal_id: int

    def audit(self) -> dict[str, Any]:
        d = self.decision
        return {"decision": d.outcome, "decision_id": d.id, "counted": d.quorum_counted,
                "in_force": d.in_force, "proposal": reference(self.proposal_id)}  # fmt: skip


def decide(
    ports: Ports,
    principal: Principal | None,
    proposal_id: int,
    *,
    meeting_date: date,
    minute_reference: str,
    decision_text: str,
    approved: bool = True,
    fields: dict[str, Any] | None = None,
) -> Voted | Refusal:
    """A Board member records the Board's decision as minuted; that is their own vote."""
    action = "share.vote"

    shares = _shares(ports)

    def act(tx, permit) -> Voted:
        refuse_named(action, fields or {})
        if not isinstance(approved, bool):
            raise refuse(action, '"approved" is true or false.', "Send true or false.")
        decision = shares.decide(
            proposal_id, meeting_date=meeting_date, minute_reference=minute_reference,
            decision_text=decision_text, approved=approved,
            by=BoardVote.of_principal(principal), now=now(ports),
        )  # fmt: skip
        return Voted(decision, proposal_id)

    return run(ports, principal, action, _named_first(action, fields, int(proposal_id)), act,
               event="governance.share.decide", target=reference(proposal_id))  # fmt: skip


def vote(
    ports: Ports,
    principal: Principal | None,
    proposal_id: int,
    *,
    fields: dict[str, Any] | None = None,
) -> Voted | Refusal:
    """A Board member's own vote on the decision recorded for a proposal."""
    action = "share.vote"

    shares = _shares(ports)

    def act(tx, permit) -> Voted:
        refuse_named(action, fields or {})
        decision = shares.vote(proposal_id, by=BoardVote.of_principal(principal), now=now(ports))
        return Voted(decision, proposal_id)

    return run(ports, principal, action, _named_first(action, fields, int(proposal_id)), act,
               event="governance.board.vote", target=reference(proposal_id))  # fmt: skip


def undertaking(
    ports: Ports,
    principal: Principal | None,
    proposal_id: int,
    signed: bytes,
    *,
    signatory: str,
    role: str,
    organisation: str,
    signed_on: date,
    vault: Any,
) -> dict[str, Any] | Refusal:
    """Record the recipient's signed undertaking (the copy is stored encrypted)."""
    action = "share.undertaking"

    shares = _shares(ports)

    def act(tx, permit) -> dict[str, Any]:

        check_undertaking_organisation(shares, proposal_id, organisation)
        ref, digest = store_signed_undertaking(vault, proposal_id, signed)
        u = shares.record_signed_undertaking(
            proposal_id, digest, signatory, role, organisation, signed_on, ref,
            recorded_by=principal.user, now=now(ports),
        )  # fmt: skip
        return _Shown(proposal_view(shares, proposal_id),
                      {"undertaking_id": u.id, "signed_on": u.signed_on.isoformat()})  # fmt: skip

    return run(ports, principal, action, _state(int(proposal_id)), act,
               event="governance.share.undertaking", target=reference(proposal_id))  # fmt: skip


class _Shown(dict):
    """A payload (a dict, as adapters answer it) with what it says to the audit."""

    def __init__(self, payload: dict[str, Any], audit: dict[str, Any]) -> None:
        super().__init__(payload)
        self.audit = audit


# -- the register: revocations and confirmations -----------------------------------------
def revoke(
    ports: Ports, principal: Principal | None, share_id: int, kind: str, reason: str
) -> dict[str, Any] | Refusal:
    """Record a revocation or deletion request sent to a recipient, by this person."""

    shares = _shares(ports)

    def act(tx, permit) -> dict[str, Any]:
        rid = shares.request_removal(share_id, kind, reason, principal.user,
                                             now=now(ports))  # fmt: skip
        return _Shown({"request_id": rid, "share_id": share_id}, {"request_id": rid})

    return run(ports, principal, "share.revoke", Resource("share", str(share_id)), act,
               event="governance.share.revoke", target=str(share_id))  # fmt: skip


def confirm(
    ports: Ports,
    principal: Principal | None,
    request_id: int,
    *,
    recipient_officer: str,
    confirmed_on: date,
    evidence_ref: str,
) -> dict[str, Any] | Refusal:
    """Record the recipient's confirmation (their officer `recipient_officer` signed it);
    the person recording it is the authenticated principal, in the audit."""

    shares = _shares(ports)

    def act(tx, permit) -> dict[str, Any]:
        cid = shares.record_confirmation(
            request_id, recipient_officer, confirmed_on, evidence_ref, now=now(ports)
        )
        return _Shown({"confirmation_id": cid, "request_id": request_id},
                      {"confirmation_id": cid})  # fmt: skip

    return run(ports, principal, "share.revoke", Resource("share request", str(request_id)),
               act, event="governance.share.confirm", target=str(request_id))  # fmt: skip


# -- recipients ----------------------------------------------------------------------------
def add_recipient(
    ports: Ports,
    principal: Principal | None,
    *,
    organisation: str,
    kind: str,
    contact: str,
    dicom_node: DicomNode | None,
    public_key: str | None,
    data_sharing_agreement: bool,
) -> Recipient | Refusal:
    """Personnel add a recipient (the adapter then registers its DICOM node send-only
    with the access room, outside this room's transaction)."""

    recipients = Recipients(ports.db, policy(ports))

    def act(tx, permit) -> Recipient:
        made = recipients.add(
            organisation, kind, contact, dicom_node=dicom_node, public_key=public_key,
            data_sharing_agreement=data_sharing_agreement, added_by=principal.user,
            now=now(ports),
        )  # fmt: skip
        return _Audited(made, {"kind": made.kind, "agreement": made.data_sharing_agreement})

    out = run(ports, principal, "recipient.manage", Resource("recipient"), act,
              event="governance.recipient.add")  # fmt: skip
    return out.value if isinstance(out, _Audited) else out


@dataclass(frozen=True)
class _Audited:
    value: Any
    detail: dict[str, Any]

    def audit(self) -> dict[str, Any]:
        return self.detail


def set_agreement(
    ports: Ports, principal: Principal | None, recipient_id: int, on_file: object
) -> Recipient | Refusal:
    recipients = Recipients(ports.db, policy(ports))

    def act(tx, permit) -> _Audited:
        if not isinstance(on_file, bool):
            raise refuse("recipient.manage", 'give "on_file": true or false.', "Send a boolean.")
        r = recipients.set_data_sharing_agreement(recipient_id, on_file)
        return _Audited(r, {"on_file": r.data_sharing_agreement})

    out = run(ports, principal, "recipient.manage", Resource("recipient", str(recipient_id)),
              act, event="governance.recipient.agreement", target=str(recipient_id))  # fmt: skip
    return out.value if isinstance(out, _Audited) else out


def deactivate_recipient(
    ports: Ports, principal: Principal | None, recipient_id: int
) -> Recipient | Refusal:
    recipients = Recipients(ports.db, policy(ports))

    def act(tx, permit) -> _Audited:
        return _Audited(recipients.deactivate(recipient_id), {})

    out = run(ports, principal, "recipient.manage", Resource("recipient", str(recipient_id)),
              act, event="governance.recipient.deactivate", target=str(recipient_id))  # fmt: skip
    return out.value if isinstance(out, _Audited) else out


# -- execution: check, send (outside any transaction), record -----------------------------
@dataclass(frozen=True)
class Execution:
    ticket: ShareTicket
    method: str
    studies: dict[str, str]  # case id -> Orthanc study id


def execute_share(
    ports: Ports,
    principal: Principal | None,
    proposal_id: int,
    method: str,
    deliver: Callable[[Execution], tuple[list[tuple[str, str, str]], Any]],
) -> dict[str, Any] | Refusal:
    """Send an approved share and enter it in the register, audited once.

    Every rule is checked again first (authorise_share: quorum without the proposer, a
    recorded undertaking, levels against the recipient's agreement, withdrawn cases).
    `deliver(execution)` sends or packages the files outside any transaction (a C-STORE
    may take minutes) and returns the manifest rows (case, SOP UID, sha256) and what the
    adapter answers (a package, or None); it raises Refused when the recipient refused.
    """
    action, event, target = "share.execute", "governance.share.execute", reference(proposal_id)
    shares = _shares(ports)
    try:
        proposal = shares.get(proposal_id)
        resource = Resource("share proposal", target, state=proposal.status)
    except Exception as exc:  # noqa: BLE001 - not found: refused below
        proposal, resource = None, Resource("share proposal", target, state="missing")
        missing = refusal_of(action, exc)
    verdict = authorise(ports.actions, principal, action, resource)
    if not verdict:
        audit_refusal(ports, principal, verdict, event, target)
        return verdict
    try:
        if proposal is None:
            raise refuse(action, missing.reason, missing.next, "not_found")
        if method not in ("cstore", "package"):
            raise refuse(action, '"method" is "cstore" or "package".', "Choose one.")
        cases = released_cases(ports, action, list(proposal.case_ids))
        refuse_face_holds(ports, action, cases, "share")  # issue 24: faces
        try:
            ticket = shares.authorise_share(proposal_id, levels_of(cases), now=now(ports))
        except Exception as exc:  # noqa: BLE001 - a governance rule: a refusal
            raise refuse(action, str(exc), refusal_of(action, exc).next,
                         refusal_of(action, exc).code) from None  # fmt: skip
        if method not in ticket.methods:
            what = "DICOM node" if method == "cstore" else "public key"
            raise refuse(
                action,
                f"{ticket.recipient.organisation} has no {what} on record.",
                "Record it with `archive recipients`, or use the other method.",
            )
        execution = Execution(ticket, method, {c: k.orthanc_study_id for c, k in cases.items()})
        entries, answer = deliver(execution)
    except Exception as exc:
        refusal = getattr(exc, "refusal", None)
        if refusal is None and isinstance(exc, ArchiveError):  # e.g. a package refused
            refusal = refusal_of(action, exc)
        if refusal is None:
            raise
        audit_refusal(ports, principal, refusal, event, target)
        return refusal
    sid = shares.record_share_execution(proposal_id, entries, method, now(ports),
                                        executed_by=principal.user)  # fmt: skip
    entry = next(e for e in shares.share_log() if e["share_id"] == sid)
    audit_outcome(
        ports, principal, event, "success", target, share_id=sid, method=method,
        instances=len(entries), recipient_id=ticket.recipient.id,
        decision_id=ticket.decision.id, undertaking_id=ticket.undertaking.id,
    )  # fmt: skip
    return {
        "share_id": sid,
        "method": method,
        "destination": entry["destination"],
        "instances": len(entries),
        "manifest_sha256": entry["manifest_sha256"],
        "register": entry,
        "package": answer,
    }


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

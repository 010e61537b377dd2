"""Closing the suite as use cases (issue 21): every step by the authenticated person.

    plan               closure.view        the one plan (closure/plan.py), CLI and web
    decide             closure.vote        a Board member records the decision: their vote
    vote               closure.vote        each other member votes for themselves
    transfer           closure.transfer    the whole archive to the Board-named collection
    receipt            closure.transfer    the receiving collection's receipt
    confirm_wipe       closure.confirm_wipe  one of the two people confirming the wipe
    attest_workstation closure.transfer    a workstation's drive wiped (who: this person)

The transfer's delivery is a port (`deliver(decision, recipient)` returns the method and
the manifest rows sent): the C-STORE adapter (plugins/closure_routes.py) today; a
transfer package (archive/transfer/, issue 25) can be another deliverer. The wipe itself
runs on a stopped archive (archive/cli/close.py) behind ClosureRecords.check_wipe_allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from archive.access.principal import Principal
from archive.core import Permit, Ports, Refusal, Resource, authorise
from archive.errors import ArchiveError
from archive.governance.board import BoardVote, Decision
from archive.governance.closure.plan import gather_plan, plan_payload
from archive.governance.closure.records import ClosureRecords
from archive.governance.pulls import PullInventory
from archive.governance.sharing.recipients import Recipient, Recipients
from archive.governance.usecase import (
    audit_outcome,
    audit_refusal,
    now,
    policy,
    refusal_of,
    refuse,
    run,
)


def _records(ports: Ports) -> ClosureRecords:
    return ClosureRecords(ports.db, policy(ports))


@dataclass(frozen=True)
class Shown:
    value: Any
    detail: dict[str, Any]

    def audit(self) -> dict[str, Any]:
        return self.detail


def _ready(ports: Ports) -> None:
    from archive.governance.removals.records import RemovalRequests
    from archive.governance.sharing.records import Shares
    from archive.vault.ledger import InstanceLedger

    for make in (Shares, RemovalRequests):
        make(ports.db, policy(ports))
    PullInventory(ports.db)
    InstanceLedger(ports.db)


def _unwrap(out: Any) -> Any:
    return out.value if isinstance(out, Shown) else out


def plan(ports: Ports, principal: Principal | None, home: Any,
         volume_kind: str | None) -> dict[str, Any] | Refusal:  # fmt: skip
    _ready(ports)  # every room's tables exist before the transaction opens

    def act(tx, permit: Permit) -> Shown:
        shown = plan_payload(
            gather_plan(home, ports.db, policy(ports), volume_kind=volume_kind, now=now(ports)),
            home,
        )
        return Shown(shown, {"cases": shown["cases"], "bytes": shown["bytes"],
                             "volumes": len(shown["volumes"])})  # fmt: skip

    return _unwrap(run(ports, principal, "closure.view", Resource("closure plan"), act,
                       event="closure.plan"))  # fmt: skip


def _decision_detail(d: Decision) -> dict[str, Any]:
    return {"decided": d.outcome, "minute": d.minute_reference, "decision_id": d.id,
            "recipient": d.receiving_recipient_id, "counted": d.quorum_counted,
            "in_force": d.in_force}  # fmt: skip


def decide(
    ports: Ports, principal: Principal | None, outcome: str, *, meeting_date: date,
    minute_reference: str, decision_text: str, receiving_recipient_id: int | None,
) -> Decision | Refusal:  # fmt: skip
    """The Board's decision on the archive's fate, recorded by a member: their vote."""

    records = _records(ports)

    def act(tx, permit: Permit) -> Shown:
        d = records.record_decision(
            outcome, meeting_date=meeting_date, minute_reference=minute_reference,
            decision_text=decision_text, receiving_recipient_id=receiving_recipient_id,
            by=BoardVote.of_principal(principal), now=now(ports),
        )  # fmt: skip
        return Shown(d, _decision_detail(d))

    return _unwrap(run(ports, principal, "closure.vote", Resource("closure decision"), act,
                       event="closure.decision"))  # fmt: skip


def vote(ports: Ports, principal: Principal | None, decision_id: int) -> Decision | Refusal:
    """A Board member's own vote for a recorded closure decision."""

    records = _records(ports)

    def act(tx, permit: Permit) -> Shown:
        d = records.vote(decision_id, by=BoardVote.of_principal(principal),
                                 now=now(ports))  # fmt: skip
        return Shown(d, {"counted": d.quorum_counted, "in_force": d.in_force})

    target = f"decision {decision_id}"
    return _unwrap(run(ports, principal, "closure.vote", Resource("closure decision"), act,
                       event="governance.board.vote", target=target))  # fmt: skip


def receipt(
    ports: Ports, principal: Principal | None, transfer_id: int, *,
    manifest_sha256: str | None, received_manifest: Sequence[Sequence[str]] | None,
    received_by: str, organisation: str, received_on: date, signed_document_sha256: str = "",
    stored_ref: str = "",
) -> Any:  # fmt: skip
    """The receiving collection's receipt, recorded by this person."""

    records = _records(ports)

    def act(tx, permit: Permit) -> Shown:
        r = records.record_receipt(
            transfer_id, manifest_sha256=manifest_sha256, received_manifest=received_manifest,
            received_by=received_by, organisation=organisation, received_on=received_on,
            signed_document_sha256=signed_document_sha256, stored_ref=stored_ref,
            recorded_by=principal.user, now=now(ports),
        )  # fmt: skip
        return Shown(r, {"receipt": r.id, "organisation": r.organisation})

    return _unwrap(run(ports, principal, "closure.transfer", Resource("closure receipt"), act,
                       event="closure.receipt", target=f"transfer {transfer_id}"))  # fmt: skip


def confirm_wipe(ports: Ports, principal: Principal | None) -> Any:
    """One person's confirmation of the wipe (two different people are needed)."""

    records = _records(ports)

    def act(tx, permit: Permit) -> Shown:
        done = records.confirm_wipe(principal.user, [permit.role], now=now(ports))
        return Shown(done, {"decision": done.decision_id, "role": done.role})

    return _unwrap(run(ports, principal, "closure.confirm_wipe", Resource("wipe"), act,
                       event="closure.wipe_confirm"))  # fmt: skip


def attest_workstation(
    ports: Ports, principal: Principal | None, workstation: str, method: str,
    wiped_at: datetime | None = None,
) -> Any:  # fmt: skip
    """This person attests that a workstation's drive was wiped (when, how)."""

    pulls = PullInventory(ports.db)

    def act(tx, permit: Permit) -> Shown:
        at = now(ports)
        done = pulls.attest_wipe(workstation, principal.user, method,
                                                   wiped_at=wiped_at or at, now=at)  # fmt: skip
        return Shown(done, {"attested_by": done.attested_by, "method": done.method})

    return _unwrap(run(ports, principal, "closure.transfer", Resource("workstation", workstation),
                       act, event="closure.workstation_wiped", target=workstation))  # fmt: skip


# -- the transfer: check, deliver (outside any transaction), record ---------------------
Deliver = Callable[[Decision, Recipient], tuple[str, list[list[str]], dict[str, Any]]]


def transfer(
    ports: Ports, principal: Principal | None, deliver: Deliver
) -> dict[str, Any] | Refusal:
    """Send the whole archive to the collection the Board named, and record the manifest.

    `deliver(decision, recipient)` returns (method, manifest rows [case, SOP UID, sha256],
    what the adapter adds to its answer); it raises Refused when the receiver refused."""
    action, event = "closure.transfer", "closure.transfer"
    verdict = authorise(ports.actions, principal, action, Resource("closure transfer"))
    if not verdict:
        audit_refusal(ports, principal, verdict, event)
        return verdict
    records = _records(ports)
    try:
        decision = records.current_decision()
        if decision is None or decision.outcome != "transfer":
            raise refuse(action, "no School Board decision to transfer the archive is in force.",
                         "Record it (`archive close decide --outcome transfer`) and have the "
                         "Board's members vote, then transfer.", "state")  # fmt: skip
        recipient = Recipients(ports.db, policy(ports)).get(decision.receiving_recipient_id)
        method, manifest, extra = deliver(decision, recipient)
        done = records.record_transfer(manifest, method, executed_by=principal.user,
                                       now=now(ports))  # fmt: skip
    except Exception as exc:
        refusal = getattr(exc, "refusal", None)
        if refusal is None and isinstance(exc, ArchiveError):
            refusal = refusal_of(action, exc)
        if refusal is None:
            raise
        audit_refusal(ports, principal, refusal, event)
        return refusal
    from archive.closure.auditing import hash_for_audit
    from archive.governance import manifest as mf

    audit_outcome(ports, principal, event, "success", f"transfer {done.id}",
                  instances=done.instance_count, recipient=recipient.organisation,
                  manifest_sha256=hash_for_audit(done.manifest_sha256))  # fmt: skip
    return {
        "transfer_id": done.id,
        "method": method,
        "organisation": recipient.organisation,
        "instance_count": done.instance_count,
        "manifest_sha256": done.manifest_sha256,
        "manifest": mf.as_dict(records.transfer_manifest(done.id)),
        **extra,
    }

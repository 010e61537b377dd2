"""Quarantine review as use cases (issue 21): mask, release, reject, record consent.

Each act is the named reviewer's own: the adapters (the CLI on the home, the release
route) pass the authenticated principal, never a typed name. Each authorises with
archive.core (quarantine.view, quarantine.review, quarantine.consent in
policies/access/actions.toml; a release is never by whoever ingested the study),
acts in one transaction, writes one audit record and returns a typed result or a
Refusal with the reason and what to do next.

A release differs in one way: the reviewed bytes go into Orthanc (through the port the
adapter hands in) between minting the one-time ticket and recording the decision, and
no transaction may stay open while Orthanc stores them (its received-instance callback
redeems the ticket on the archive database). So a release authorises, checks and mints
(committed), stores, then records flags and the decision in one transaction, and
audits once at the end whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archive.access.principal import Principal
from archive.audit.events import AuditEvent
from archive.core import Ports, Refusal, Refused, Resource, authorise, perform, transaction
from archive.errors import ArchiveError
from archive.quarantine.review import Box, MaskResult, check_release, mask, same_person
from archive.quarantine.store import QuarantineItem, QuarantineStore

NEXT = "See `archive quarantine show ITEM`, then do the step the reason names."


@dataclass
class QuarantineRoom:
    """The ports, the quarantine store on the ports' connection and the masking policy."""

    ports: Ports
    store: QuarantineStore
    masking: Any  # archive.pixels.MaskingPolicy


@dataclass(frozen=True)
class Masked:
    result: MaskResult
    template: str | None = None

    def audit(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"words_left": self.result.words_left}
        if self.template:
            detail["template"] = self.template
        return detail


@dataclass(frozen=True)
class Decided:
    item: QuarantineItem
    detail: dict[str, Any] = field(default_factory=dict)
    orthanc_id: str | None = None

    def audit(self) -> dict[str, Any]:
        return dict(self.detail)


@dataclass(frozen=True)
class ConsentRecorded:
    study_uid: str
    level: str

    @property
    def audit_target(self) -> str:
        return self.study_uid

    def audit(self) -> dict[str, Any]:
        return {"level": self.level}


def _refused(action: str, exc: ArchiveError, code: str = "state") -> Refused:
    return Refused(Refusal(action, str(exc).rstrip("."), NEXT, code))


def _item(room: QuarantineRoom, item_id: str, action: str) -> QuarantineItem:
    try:
        return room.store.get(item_id)
    except ArchiveError as exc:
        raise Refused(Refusal(action, str(exc).rstrip("."), "List held items first.",
                              "not_found")) from None  # fmt: skip


def _ingester(item: QuarantineItem, principal: Principal | None) -> str | None:
    """Who ingested the item, as an account name (the rules' `requester`)."""
    if principal is not None and same_person(principal.user, item.ingested_by):
        return principal.user
    return item.ingested_by.rpartition(":")[2] or None


def mask_item(
    room: QuarantineRoom,
    principal: Principal | None,
    item_id: str,
    regions: list[Box],
    image_area: list[Box],
    *,
    save_template: Callable[[MaskResult, str], str] | None = None,
) -> Masked | Refusal:
    """Black out `regions` in every frame and OCR what is left, as the reviewer.
    `save_template(result, reviewer)` (optional) keeps the regions as a template."""

    def act(tx, permit):
        _item(room, item_id, "quarantine.review")
        try:
            result = mask(room.store, room.masking, item_id, regions, image_area, principal.user)
            saved = save_template(result, principal.user) if save_template else None
        except ArchiveError as exc:
            raise _refused("quarantine.review", exc) from None
        return Masked(result, saved)

    return perform(room.ports, principal, "quarantine.review", None, act, target=item_id,
                   record="quarantine.mask", detail={"regions": len(regions)})  # fmt: skip


def reject_item(
    room: QuarantineRoom, principal: Principal | None, item_id: str, note: str = ""
) -> Decided | Refusal:
    """Reject a held item: its ciphertext (and wrapped key) is deleted for good."""

    def act(tx, permit):
        _item(room, item_id, "quarantine.review")
        try:
            return Decided(room.store.decide(item_id, "rejected", principal.user, note[:500]))
        except ArchiveError as exc:
            raise _refused("quarantine.review", exc) from None

    return perform(room.ports, principal, "quarantine.review", None, act, target=item_id,
                   record="quarantine.reject")  # fmt: skip


def record_consent(
    room: QuarantineRoom, principal: Principal | None, study_uid: str, level: str, note: str = ""
) -> ConsentRecorded | Refusal:
    """Record a photograph consent level against a de-identified study, as yourself."""
    from archive.pixels import check_consent_level

    def act(tx, permit):
        try:
            check_consent_level(room.masking, level)
        except ArchiveError as exc:
            raise _refused("quarantine.consent", exc, "invalid") from None
        room.store.record_consent(study_uid, level, principal.user, note[:500])
        return ConsentRecorded(study_uid, level)

    return perform(room.ports, principal, "quarantine.consent", None, act, target=study_uid,
                   record="quarantine.consent")  # fmt: skip


def release_item(
    room: QuarantineRoom,
    principal: Principal | None,
    item_id: str,
    note: str,
    *,
    mint: Callable[[QuarantineItem, bytes, str], str],
    store_instance: Callable[[bytes], dict],
    redeemed: Callable[[str], bool],
    record_flags: Callable[[QuarantineItem, list[str]], None],
) -> Decided | Refusal:
    """Release a reviewed item into Orthanc unchanged, as the reviewer (never whoever
    ingested it). The adapter supplies the ticket (`mint`, `redeemed`), Orthanc
    (`store_instance(bytes) -> {"ID": ...}`) and the ingest flags (`record_flags`)."""
    from archive.pixels import PHOTOGRAPH_FLAG

    ports, action = room.ports, "quarantine.review"
    outcome: Decided | Refusal
    detail: dict[str, Any] = {}
    try:
        verdict = authorise(ports.actions, principal, action)  # who, before what
        if verdict:
            item = _item(room, item_id, action)
            resource = Resource(
                "quarantine item", item_id, item.status, requester=_ingester(item, principal)
            )
            verdict = authorise(ports.actions, principal, action, resource)
        if not verdict:
            raise Refused(verdict)
        try:
            item, data = check_release(room.store, room.masking, item_id, principal.user)
        except ArchiveError as exc:
            raise _refused(action, exc) from None
        nonce = mint(item, data, principal.user)
        answer = store_instance(data)
        if not redeemed(nonce):
            raise Refused(Refusal(action, "the reviewed instance was not stored as reviewed; "
                                  "it stays held", "See the archive's log; try again.",
                                  "failed"))  # fmt: skip
        flags = list(item.flags)
        if PHOTOGRAPH_FLAG in flags:
            flags.append(f"photograph-consent:{room.store.consent_for(item.study_uid or '')}")
        with transaction(ports.db):
            record_flags(item, flags)
            decided = room.store.decide(item_id, "released", principal.user, note[:500])
        detail = {"study": item.study_uid or "", "sop": item.sop_uid or "",
                  "orthanc_id": answer.get("ID", ""), "ingested_by": item.ingested_by,
                  "masked_by": item.masked_by or "", "ticket": nonce}  # fmt: skip
        outcome = Decided(decided, detail, answer.get("ID"))
    except Refused as exc:
        outcome = exc.refusal
    fields = ({"reason": outcome.reason, "code": outcome.code}
              if isinstance(outcome, Refusal) else detail)  # fmt: skip
    ports.audit.append(AuditEvent(
        action="quarantine.release", outcome="success" if outcome else "denied",
        actor=principal.user if principal else "anonymous",
        roles=tuple(principal.roles) if principal else (), source=ports.source,
        target=item_id, detail=fields,
    ))  # fmt: skip
    return outcome

"""Pull use cases (issue 21): send released cases to a registered suite workstation; list.

`pull_cases` authorises `pull.create` (policies/access/actions.toml: trained users of the
teaching roles, released cases only) for the authenticated principal, checks every case
and the workstation before anything is sent, then for each case sends its stored files
(the `send` port: C-STORE from the vault, never through Orthanc's REST API) and records
the pull in one short transaction, with one audit record per case (governance.pull) as
before. No transaction is held while a workstation receives: ingest keeps writing.
A refusal (reason and next step) is returned, and audited, instead of raising.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from archive.access.principal import Principal
from archive.audit.events import AuditEvent
from archive.catalogue import Case, Catalogue
from archive.core import Ports, Refusal, Resource, authorise, perform
from archive.errors import ArchiveError
from archive.governance.pulls import PullInventory

ACTION = "pull.create"
RECORD = "governance.pull"


@dataclass(frozen=True)
class Sent:
    """What a workstation accepted of one case (from archive.dicom.send.SendResult)."""

    sent: int
    failed: int = 0
    reasons: tuple[str, ...] = ()


@dataclass
class PullRoom:
    ports: Ports
    catalogue: Catalogue
    # name -> the registered workstation node (aet, host, port) or None
    workstation: Callable[[str], Any]
    # (case, node) -> Sent; raises when the node is down or refuses the association
    send: Callable[[Case, Any], Sent]
    # case -> whether the vault holds its files
    stored: Callable[[Case], bool] = lambda case: True


@dataclass(frozen=True)
class Pulled:
    workstation: str
    aet: str
    pulled: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"workstation": self.workstation, "aet": self.aet, "pulled": self.pulled}


@dataclass(frozen=True)
class Inventory:
    inventory: dict[str, list[str]]
    pulls: list[dict[str, Any]]

    def audit(self) -> dict[str, Any]:
        return {"pulls": len(self.pulls)}

    def to_dict(self) -> dict[str, Any]:
        return {"inventory": self.inventory, "pulls": self.pulls}


def _audit(room: PullRoom, principal, outcome: str, target: str | None, **detail) -> None:
    room.ports.audit.append(AuditEvent(
        action=RECORD, outcome=outcome, actor=principal.user if principal else "anonymous",
        roles=tuple(principal.roles) if principal else (), source=room.ports.source,
        target=target, detail=detail,
    ))  # fmt: skip


def _refuse(room, principal, refusal: Refusal, target=None, **detail) -> Refusal:
    _audit(room, principal, "denied", target, reason=refusal.reason, code=refusal.code, **detail)
    return refusal


def pull_cases(
    room: PullRoom, principal: Principal | None, workstation: str, case_ids: Sequence[str]
) -> Pulled | Refusal:
    """Send released cases to a registered workstation as `principal`."""
    policy = room.ports.actions
    verdict = authorise(policy, principal, ACTION, Resource("case", state="available"))
    if not verdict:
        return _refuse(room, principal, verdict)
    if not isinstance(case_ids, list | tuple) or not case_ids:
        return Refusal(ACTION, 'give "cases": a list of case ids', "", "invalid")
    if not isinstance(workstation, str) or not workstation:
        return Refusal(ACTION, 'give "workstation": the name of a registered suite '
                       "workstation", "", "invalid")  # fmt: skip
    node = room.workstation(workstation)
    if node is None:
        return _refuse(room, principal, Refusal(
            ACTION, f"{workstation!r} is not a registered suite workstation",
            "List the workstations with `archive workstations list`.", "not_found",
        ), workstation=workstation)  # fmt: skip
    chosen: list[Case] = []
    for case_id in case_ids:
        case = None
        if isinstance(case_id, str) and case_id.strip():
            try:
                case = room.catalogue.get(case_id)
            except ArchiveError:
                case = None
        state = case.status if case is not None else None
        verdict = authorise(policy, principal, ACTION, Resource("case", str(case_id), state))
        if case is None or not verdict:  # unknown and unreleased read the same
            return _refuse(room, principal, Refusal(
                ACTION, f"case {str(case_id)[:64]} is not an available (released) case",
                "Search the catalogue for released cases.", "not_found",
            ), str(case_id)[:64], workstation=workstation)  # fmt: skip
        chosen.append(case)
    results = []
    for case in chosen:
        if not room.stored(case):
            return _refuse(room, principal, Refusal(
                ACTION, f"case {case.case_id} has no stored files in the vault",
                "Ask school personnel to run `archive fsck`.", "conflict",
            ), case.case_id, workstation=workstation)  # fmt: skip
        try:
            answer = room.send(case, node)
        except Exception:  # noqa: BLE001 - the workstation refused or is down
            answer = Sent(0, 1, ("no association",))
        if answer.failed:
            why = "; ".join(sorted(set(answer.reasons)))[:200]
            _audit(room, principal, "failure", case.case_id, workstation=workstation, why=why)
            return Refusal(ACTION, f"workstation {workstation} did not accept case "
                           f"{case.case_id} ({why})", "Check that the workstation is up and "
                           "listening, then pull again.", "unavailable")  # fmt: skip
        pull_id = PullInventory(room.ports.db).record_pull(  # its own short transaction
            case.case_id, workstation, principal.user, room.ports.clock()
        )
        _audit(room, principal, "success", case.case_id, workstation=workstation,
               instances=answer.sent, pull_id=pull_id)  # fmt: skip
        results.append({"case_id": case.case_id, "instances": answer.sent, "pull_id": pull_id})
    return Pulled(workstation, node.aet, results)


def pull_inventory(ports: Ports, principal: Principal | None) -> Inventory | Refusal:
    """Which cases sit on which workstation, and every pull (pull.view)."""

    inventory = PullInventory(ports.db)  # its tables, before the act's transaction

    def act(tx, permit):
        return Inventory(inventory.inventory(), inventory.pulls())

    return perform(ports, principal, "pull.view", None, act, record="governance.pull.inventory")

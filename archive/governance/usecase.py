"""How the governance workflows run their acts on the core (archive.core, issue 21).

Every governance use case (removals, sharing, closure, withdrawal) is one call of
`run(ports, principal, action, resource, act, event=...)`: `archive.core.perform`
authorises `action` against policies/access/actions.toml, runs `act` in one transaction,
audits once under the governance room's established event name (`event`, e.g.
"governance.share.propose", so the audit log keeps its vocabulary) and returns the
result or a `Refusal`. A governance rule broken inside the act (a GovernanceError) rolls
the transaction back and comes out as a Refusal carrying the rule's message, what to do
next and a code the adapters turn into a status (invalid 400, forbidden 403,
not_found 404, state 409).

Ports a governance use case reads from `ports.extra`:
  "governance"  the GovernancePolicy (policies/governance);
  "catalogue"   anything with `get(case_id)` -> a case with status, level and
                orthanc_study_id (the catalogue room's answer; never its tables).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from archive.access.principal import Principal
from archive.audit.events import AuditEvent
from archive.core import Permit, Ports, Refusal, Refused, Resource, perform
from archive.errors import ArchiveError
from archive.governance import errors as ge

T = TypeVar("T")

# A governance rule's class -> (refusal code, what to do next when the message is all).
_CODES: tuple[tuple[type[Exception], str, str], ...] = (
    (ge.NotFoundError, "not_found", "Check the number; list what exists first."),
    (ge.NotAuthorisedError, "forbidden", "Ask the person who holds that role to act."),
    (ge.StateError, "state", "Do the step the message names first, then try again."),
    (ge.QuorumError, "state", "Each Board member casts their own vote; then try again."),
    (ge.UndertakingMissingError, "state", "Record the recipient's signed undertaking first."),
    (ge.ExpiredError, "state", "Ask for a new approval."),
    (ge.DownloadLimitError, "state", "Ask for a new approval."),
    (ge.WipeRefusedError, "state", "Complete the steps the message lists, then wipe."),
    (ge.CertificateError, "state", "Complete the steps the message lists."),
    (ge.GovernancePolicyError, "state", "Fix policies/governance and start again."),
    (ge.GovernanceError, "invalid", "Correct the request as the message says."),
    (ArchiveError, "invalid", "Correct the request as the message says."),
)

STATUS = {
    "invalid": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "training": 403,
    "not_found": 404,
    "state": 409,
    "conflict": 409,
    "unavailable": 502,  # the receiving node refused or is down
}


def status_of(refusal: Refusal) -> int:
    """The HTTP status for a refusal's code (adapters answer it)."""
    return STATUS.get(refusal.code, 403)


def refusal_of(action: str, exc: Exception) -> Refusal:
    """A governance rule's refusal as the core's Refusal."""
    for kind, code, next_step in _CODES:
        if isinstance(exc, kind):
            return Refusal(action, str(exc), next_step, code)
    raise exc


def refuse(action: str, reason: str, next_step: str, code: str = "invalid") -> Refused:
    """Raise-able refusal from inside an act: `raise refuse(...)`."""
    return Refused(Refusal(action, reason, next_step, code))


@dataclass
class _Named:
    """The audit port, writing each record under the governance event name."""

    audit: Any
    event: str

    def append(self, event: AuditEvent) -> int:
        detail = {k: v for k, v in event.detail.items() if v is not None}  # "none" is absent
        return self.audit.append(replace(event, action=self.event, detail=detail))


def _guard(action: str, fn: Callable[..., T]) -> Callable[..., T]:
    def guarded(*args: Any) -> T:
        try:
            return fn(*args)
        except Refused:
            raise
        except ArchiveError as exc:
            raise Refused(refusal_of(action, exc)) from None

    return guarded


def run(
    ports: Ports,
    principal: Principal | None,
    action: str,
    resource: Resource | Callable[[Any], Resource] | None,
    act: Callable[[Any, Permit], T],
    *,
    event: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> T | Refusal:
    """`perform` for a governance act: rules broken inside become refusals."""
    res = _guard(action, resource) if callable(resource) else resource
    named = replace(ports, audit=_Named(ports.audit, event))
    return perform(named, principal, action, res, _guard(action, act), target=target, detail=detail)


def audit_refusal(ports: Ports, principal: Principal | None, refusal: Refusal, event: str,
                  target: str | None = None, **detail: Any) -> None:  # fmt: skip
    """One audit record for a refusal decided outside `run` (a long act's later phase)."""
    ports.audit.append(
        AuditEvent(
            action=event,
            outcome="denied",
            actor=principal.user if principal is not None else "anonymous",
            roles=tuple(principal.roles) if principal is not None else (),
            source=ports.source,
            target=target,
            detail={"reason": refusal.reason, "code": refusal.code, **detail},
        )
    )


def audit_outcome(ports: Ports, principal: Principal, event: str, outcome: str,
                  target: str | None = None, **detail: Any) -> None:  # fmt: skip
    ports.audit.append(
        AuditEvent(
            action=event,
            outcome=outcome,
            actor=principal.user,
            roles=tuple(principal.roles),
            source=ports.source,
            target=target,
            detail=detail,
        )  # fmt: skip
    )


def policy(ports: Ports):
    """The governance policy port."""
    return ports.extra["governance"]


def now(ports: Ports) -> datetime:
    return ports.clock()


def released_cases(ports: Ports, action: str, case_ids: Sequence[object]) -> dict[str, Any]:
    """The named cases, each released (available) now; anything else is refused the same
    way (not found), so an unreleased case's existence is not revealed."""
    if not isinstance(case_ids, list | tuple) or not case_ids:
        raise refuse(action, "give the cases: a list of case ids.", "Name at least one case.")
    catalogue = ports.extra["catalogue"]
    out: dict[str, Any] = {}
    for case_id in case_ids:
        case = None
        if isinstance(case_id, str) and case_id.strip():
            try:
                case = catalogue.get(case_id)
            except ArchiveError:
                case = None
        if case is None or case.status != "available":
            raise refuse(
                action,
                f"case {case_id} is not an available (released) case.",
                "Name released cases only; see `archive cases search`.",
                "not_found",
            )
        out[case_id] = case
    return out


def levels_of(cases: Mapping[str, Any]) -> dict[str, str]:
    return {cid: case.level for cid, case in cases.items()}

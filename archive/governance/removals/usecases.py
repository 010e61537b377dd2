"""Removals as use cases (issue 21): images leave the suite only on written permission.

    request   removal.request   a trained user asks; commercial purposes and wrong levels
                                are refused when asked
    approve   removal.approve   the Head of School or a TPD, never on their own request
    refuse    removal.refuse    the same people, with a reason
    may_download  removal.download  only the requester, of an approved request (the
                                spend itself is RemovalRequests.authorise_export)

Each takes the authenticated principal; the approver recorded is that person, in the role
actions.toml let them act in (the Permit's role). Returns the result or a Refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from archive.access.principal import Principal
from archive.core import Permit, Ports, Refusal, Resource, authorise
from archive.governance import tables
from archive.governance.removals.records import RemovalRequest, RemovalRequests
from archive.governance.usecase import levels_of, now, policy, refuse, released_cases, run
from archive.ingest.flags import refuse_face_holds


def _registry(ports: Ports) -> RemovalRequests:
    return RemovalRequests(ports.db, policy(ports))


def _request(rid: int) -> Callable[[Any], Resource]:
    """The request's state and requester, read under the use case's transaction."""

    def resource(tx) -> Resource:
        requests = tables.removal_requests
        row = tx.execute(
            select(requests.c.status, requests.c.requester)
            .where(requests.c.id == rid)
            .with_for_update()  # the state authorised on is the state the act changes
        ).fetchone()
        if row is None:
            raise refuse("removal", f"removal request {rid} does not exist.",
                          "List them with `archive removals list`.", "not_found")  # fmt: skip
        return Resource("removal request", str(rid), state=row[0], requester=row[1],
                        owner=row[1])  # fmt: skip

    return resource


class _Made:
    def __init__(self, item: RemovalRequest, **audit: Any) -> None:
        self.item = item
        self.audit = {"purpose": item.purpose, "cases": len(item.case_ids), **audit}


def request(
    ports: Ports, principal: Principal | None, case_ids: Sequence[str], purpose: str,
    destination: str,
) -> RemovalRequest | Refusal:  # fmt: skip
    """Record a removal request by this person, checked now (purpose, levels)."""
    action = "removal.request"

    registry = _registry(ports)

    def act(tx, permit: Permit) -> _Made:
        cases = released_cases(ports, action, list(case_ids or []))
        refuse_face_holds(ports, action, cases, "export")  # issue 24: faces
        levels = levels_of(cases)
        made = registry.create(
            list(levels), purpose, destination, principal.user, principal.roles,
            case_levels=levels, now=now(ports),
        )  # fmt: skip
        return _Made(made, request=made.id)

    out = run(ports, principal, action, Resource("removal request"), act,
              event="governance.removal.request")  # fmt: skip
    return out.item if isinstance(out, _Made) else out


def approve(
    ports: Ports, principal: Principal | None, request_id: int, text: str,
    expires_at: datetime | None = None, max_downloads: int | None = None,
) -> RemovalRequest | Refusal:  # fmt: skip
    """The written approval, by this person (never on their own request)."""

    registry = _registry(ports)

    def act(tx, permit: Permit) -> _Made:
        registry.approve(request_id, principal.user, (permit.role,), text, expires_at,
                         max_downloads, now=now(ports))  # fmt: skip
        return _Made(registry.get(request_id), role=permit.role)

    out = run(ports, principal, "removal.approve", _request(int(request_id)), act,
              event="governance.removal.approve", target=str(request_id))  # fmt: skip
    return out.item if isinstance(out, _Made) else out


def refuse_request(
    ports: Ports, principal: Principal | None, request_id: int, reason: str
) -> RemovalRequest | Refusal:
    """A refusal with its reason, by this person."""

    registry = _registry(ports)

    def act(tx, permit: Permit) -> _Made:

        registry.refuse(request_id, principal.user, (permit.role,), reason, now=now(ports))
        return _Made(registry.get(request_id), role=permit.role)

    out = run(ports, principal, "removal.refuse", _request(int(request_id)), act,
              event="governance.removal.refuse", target=str(request_id))  # fmt: skip
    return out.item if isinstance(out, _Made) else out


def approver_of(item: RemovalRequest) -> frozenset[str]:
    """Who wrote the approval: besides the requester, the one other person who may
    download the package they permitted (issue 22: approvers download with a link)."""
    return frozenset({item.approval.approver}) if item.approval is not None else frozenset()


def may_download(ports: Ports, principal: Principal | None, item: RemovalRequest) -> Refusal | None:
    """None if this person may spend a download of `item` (the requester, approved);
    the refusal otherwise (the adapter audits it with the export's record)."""
    resource = Resource("removal request", str(item.id), state=item.status,
                        requester=item.requester, owner=item.requester,
                        shared_with=approver_of(item))  # fmt: skip
    verdict = authorise(ports.actions, principal, "removal.download", resource)
    return None if verdict else verdict

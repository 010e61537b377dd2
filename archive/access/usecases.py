"""People as use cases (issue 21): accounts, roles, training, applications, tokens.

Each act is made by an authenticated person (the CLI with their own password or token,
the web with their session) and authorised with archive.core (user.manage,
user.training, application.approve, token.create in policies/access/actions.toml); it
runs as one transaction of the access store, writes one audit record (the names the
archive has always used: users.add, users.train, tokens.create, ...) and returns the
result, or a Refusal with the reason and the next step. Role names stay in the policy.

The store's methods take their own write transaction (BEGIN IMMEDIATE), so the act
here is: authorise, call the store once, audit once. The first account of a
new home is the operator's act on the machine (archive/cli/users.py), not a use case.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from archive.access.principal import Principal
from archive.audit.events import AuditEvent
from archive.core import Ports, Refusal, Resource, authorise
from archive.errors import ArchiveError

T = TypeVar("T")


@dataclass
class PeopleRoom:
    ports: Ports
    store: Any  # archive.access.AccessStore on the ports' connection


def _act(
    room: PeopleRoom,
    principal: Principal | None,
    action: str,
    record: str,
    subject: str,
    fn: Callable[[], T],
    resource: Resource | None = None,
    **detail: Any,
) -> T | Refusal:
    """Authorise, run the store's one transaction, audit once (denied with the reason)."""
    fields = {"subject": subject, **detail}
    verdict = authorise(room.ports.actions, principal, action, resource)
    outcome: T | Refusal
    if not verdict:
        outcome = verdict
    else:
        try:
            outcome = fn()
        except ArchiveError as exc:  # AccessError, PolicyError: bad input or state
            outcome = Refusal(action, str(exc).rstrip("."), "Correct it and try again.",
                              "invalid")  # fmt: skip
    if isinstance(outcome, Refusal):
        fields.update(reason=outcome.reason, code=outcome.code)
    room.ports.audit.append(AuditEvent(
        action=record, outcome="success" if not isinstance(outcome, Refusal) else "denied",
        actor=principal.user if principal else "anonymous",
        roles=tuple(principal.roles) if principal else (), source=room.ports.source,
        target=subject, detail=fields,
    ))  # fmt: skip
    return outcome


def _now(room: PeopleRoom) -> datetime:
    return room.ports.clock()


def add_user(room, principal, name: str, password: str, roles: Sequence[str],
             expires: datetime | None = None):  # fmt: skip
    return _act(room, principal, "user.manage", "users.add", name,
                lambda: room.store.add_user(name, password, list(roles), _now(room),
                                            principal.user, expires),
                roles=",".join(sorted(roles)))  # fmt: skip


def set_roles(room, principal, name: str, roles: Sequence[str]):
    return _act(room, principal, "user.manage", "users.roles", name,
                lambda: room.store.set_roles(name, list(roles), _now(room), principal.user),
                roles=",".join(sorted(roles)))  # fmt: skip


def record_training(room, principal, name: str, trained_on: date,
                    familiarisation: bool = True, suite_use: bool = True):  # fmt: skip
    return _act(room, principal, "user.training", "users.train", name,
                lambda: room.store.record_training(name, trained_on, _now(room), principal.user,
                                                   familiarisation, suite_use),
                trained_on=trained_on.isoformat(), familiarisation=familiarisation,
                suite_use=suite_use)  # fmt: skip


def expire_account(room, principal, name: str, when: datetime | None):
    return _act(room, principal, "user.manage", "users.expire", name,
                lambda: room.store.expire_account(name, when),
                expires=when.isoformat() if when else "never")  # fmt: skip


def disable_account(room, principal, name: str, disabled: bool = True):
    return _act(room, principal, "user.manage", "users.disable" if disabled else "users.enable",
                name, lambda: room.store.disable(name, disabled), sessions_ended=True)  # fmt: skip


def reset_password(room, principal, name: str, password: str):
    return _act(room, principal, "user.manage", "users.reset_password", name,
                lambda: room.store.reset_password(name, password, _now(room)),
                sessions_ended=True)  # fmt: skip


def approve_application(room, principal, name: str, speciality: str, note: str = ""):
    """Admit another speciality (grants its role), in the approver's own name."""
    return _act(room, principal, "application.approve", "users.approve_application", name,
                lambda: room.store.approve_application(name, principal.user, speciality,
                                                       _now(room), note),
                approver=principal.user if principal else "")  # fmt: skip


def create_token(room, principal, name: str, days: int | None = None, label: str = ""):
    """A new API token for `name`, made only by `name` themselves: (token_id, plaintext)."""
    return _act(room, principal, "token.create", "tokens.create", name,
                lambda: room.store.create_token(name, _now(room), days, label),
                Resource("API token", owner=name))  # fmt: skip

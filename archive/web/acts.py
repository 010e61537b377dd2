"""How a web page acts: through the use-case core (archive/core), never around it.

`do(app, ctx, action, resource, fn)` runs `fn(tx)` through `archive.core.perform`: the
one authorisation (policies/access/actions.toml), one transaction, one audit record. A
refusal, or a domain error raised inside (bad input, a state that does not allow it),
becomes a WebError page that says why and what to do next; nothing is half done.

`check(...)` + `audited(...)` are for domain calls that keep their own transaction
(governance's registries, the quarantine release that stores through Orthanc): the same
authorisation first (a refusal is audited and shown), then the act, then one record.

`allowed(app, principal, action)` answers the navigation's question "may this person
ever do this?" from the same policy (no resource: roles and training only).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from archive.audit import AuditEvent
from archive.core import Ports, Refusal, Refused, Resource, authorise, load_action_policy, perform
from archive.errors import ArchiveError
from archive.paths import POLICIES_DIR

T = TypeVar("T")
STATUS = {"forbidden": 403, "training": 403, "unauthenticated": 401, "state": 409,
          "conflict": 409, "not_found": 404, "invalid": 400}  # fmt: skip
FIX = "Correct the form and try again."


class _Sink:
    def __init__(self, backend) -> None:
        self.backend = backend

    def append(self, event: AuditEvent) -> int:
        return self.backend.record(event)


def policies_dir(app) -> Path:
    return Path(getattr(app.backend, "policies_dir", None) or POLICIES_DIR)


def ports(app, ctx) -> Ports:
    return Ports(db=app.backend.db(), audit=_Sink(app.backend), policies_dir=policies_dir(app),
                 clock=lambda: ctx.now, source="web")  # fmt: skip


def refusal_error(refusal: Refusal):
    from archive.web.app import WebError

    text = refusal.reason.rstrip(".") + "."
    if refusal.next:
        text += " " + refusal.next
    return WebError(STATUS.get(refusal.code, 403), text)


def do(app, ctx, action: str, resource: Resource | Callable[[Any], Resource] | None,
       fn: Callable[[Any], T], *, target: str | None = None, next_step: str = FIX,
       **detail: Any) -> T:  # fmt: skip
    """Authorise, act in one transaction, audit once; a refusal is a WebError."""

    def act(tx, permit):
        try:
            return fn(tx)
        except Refused:
            raise
        except ArchiveError as exc:  # bad input or state: rolled back, refused, audited
            raise Refused(Refusal(action, str(exc), next_step, "invalid")) from None

    outcome = perform(ports(app, ctx), ctx.principal, action, resource, act, target=target,
                      detail=detail or None)  # fmt: skip
    if isinstance(outcome, Refusal):
        raise refusal_error(outcome)
    return outcome


def check(app, ctx, action: str, resource: Resource | None = None, target: str | None = None):
    """The authorisation alone (for acts with their own transaction); a refusal is
    audited and raised as a WebError."""
    verdict = authorise(load_action_policy(policies_dir(app)), ctx.principal, action, resource)
    if not verdict:
        audited(app, ctx, action, "denied", target, reason=verdict.reason, code=verdict.code)
        raise refusal_error(verdict)
    return verdict


def outside(app, ctx, action: str, resource: Resource | None, fn: Callable[[], T], *,
            target: str | None = None, next_step: str = FIX, **detail: Any) -> T:  # fmt: skip
    """Authorise, then run `fn` in its own transactions (slow work such as OCR must not
    hold the database's write lock; governance registries take their own), audit once."""
    check(app, ctx, action, resource, target)
    try:
        result = fn()
    except ArchiveError as exc:
        audited(app, ctx, action, "denied", target, reason=str(exc)[:300], code="invalid",
                **detail)  # fmt: skip
        raise refusal_error(Refusal(action, str(exc), next_step, "invalid")) from None
    audited(app, ctx, action, "success", target, **detail)
    return result


def audited(app, ctx, action: str, outcome: str, target: str | None = None, **detail) -> None:
    p = ctx.principal
    app.backend.record(AuditEvent(action=action, outcome=outcome, actor=p.user,
                                  roles=tuple(p.roles), source="web", target=target,
                                  detail=detail))  # fmt: skip


def allowed(app, principal, action: str) -> bool:
    """Whether the roles and training allow `action` at all (the resource decides the rest)."""
    policy = load_action_policy(policies_dir(app))
    rule = policy.rules.get(action)
    if rule is None or principal is None:
        return False
    held = set(principal.roles) & rule.roles
    if not held:
        return False
    needs = rule.training or any(r in policy.roles_requiring_training for r in held)
    return principal.trained or not needs

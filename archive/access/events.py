"""Audit events for authentication and access decisions (see archive.audit).

The request URI goes into the detail only if it passes the audit guard; Orthanc ids and
case ids do, and anything that looks like an identifier is withheld rather than logged.
"""

from __future__ import annotations

from archive.access.decide import Decision
from archive.access.principal import AuthFailure, Principal
from archive.audit import AuditError, AuditEvent, check_event


def auth_event(result: Principal | AuthFailure, source: str) -> AuditEvent:
    """auth.login: success with the user's roles, or denied with the failure reason."""
    if isinstance(result, Principal):
        detail: dict[str, str | int | bool] = {"method": result.method, "trained": result.trained}
        if result.token_id:
            detail["token_id"] = result.token_id
        return AuditEvent("auth.login", "success", result.user, result.roles, source, detail=detail)
    detail: dict[str, str | int | bool] = {"reason": result.reason}
    if result.retry_after:
        detail["retry_after"] = result.retry_after
        detail["throttle"] = result.detail
    if result.alert:
        detail["account_alert"] = True  # many failures on this account from everywhere
    return _safe(
        AuditEvent(
            "auth.login",
            "denied",
            result.user or "anonymous",
            (),
            source,
            detail=detail,
        )
    )


def decision_event(
    principal: Principal | None,
    method: str,
    uri: str,
    decision: Decision,
    source: str,
    policy_version: int,
    target: str | None = None,
) -> AuditEvent:
    """access.decision: who asked for which route, allowed or denied, by which rule."""
    detail: dict[str, str | int | bool] = {
        "method": method.upper(),
        "uri": uri.split("?", 1)[0],
        "reason": decision.reason,
        "policy_version": policy_version,
    }
    if decision.rule:
        detail["rule"] = decision.rule
    return _safe(
        AuditEvent(
            "access.decision",
            "success" if decision.allowed else "denied",
            principal.user if principal else "anonymous",
            principal.roles if principal else (),
            source,
            target,
            detail,
        )
    )


def dicom_event(
    kind: str, aet: str, host: str, decision: Decision, policy_version: int = 0
) -> AuditEvent:
    """access.dicom: a DICOM peer's request, allowed or refused."""
    detail: dict[str, str | int | bool] = {"kind": kind, "reason": decision.reason}
    if decision.rule:
        detail["rule"] = decision.rule
    return _safe(
        AuditEvent(
            "access.dicom",
            "success" if decision.allowed else "denied",
            aet.strip() or "unknown-ae",
            (),
            f"{aet.strip()}@{host}",
            detail=detail,
        )
    )


def _safe(event: AuditEvent) -> AuditEvent:
    """Withhold free-form fields that fail the guard, so the event itself can be logged."""
    try:
        check_event(event)
        return event
    except AuditError:
        detail = {k: v for k, v in event.detail.items() if k not in ("uri",)}
        detail["withheld"] = True
        actor = event.actor
        try:
            check_event(AuditEvent(event.action, event.outcome, actor))
        except AuditError:
            actor = "unidentified"
        return AuditEvent(event.action, event.outcome, actor, event.roles, "withheld", None, detail)

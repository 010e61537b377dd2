"""/teaching/removals/N/export and /download: an approved removal as an age package.

Only the requester (removal.download in actions.toml: owner, approved) spends one
download of an approved, unexpired request; the package is built in memory from the
vault's files. Crash safety (issue 14): the spend and its durable audit record
("governance.removal.download") commit together before any image is read; a download
spent but never delivered stays spent (fail closed). "governance.removal.export" then
says what became of it (durable on success).
"""

from __future__ import annotations

import hashlib
from urllib.parse import unquote_plus

import pyrage

from archive.audit import AuditEvent
from archive.core import Refused
from archive.errors import ArchiveError
from archive.export import build_package
from archive.export.package import MIN_PASSPHRASE, export_extras
from archive.governance.removals import usecases as uc
from archive.governance.removals.records import RemovalRequests
from archive.governance.usecase import levels_of, refusal_of, released_cases, status_of
from archive.ingest.flags import refuse_face_holds
from plugins import governance_http as gh
from plugins.rest import HttpError, audit_as
from plugins.vault_files import study_files

ACTION = "governance.removal.export"


def _durably(services, action, principal, outcome, target, **detail) -> None:
    event = AuditEvent(action=action, outcome=outcome, actor=principal.user,
                       roles=tuple(principal.roles), source="rest", target=target,
                       detail=detail)  # fmt: skip
    services.runtime.audit.append(event, sync=True)


def _check_key(passphrase, recipient) -> None:
    """Refuse a missing or malformed package key (400) before anything is spent."""
    if (passphrase is None) == (recipient is None):
        raise HttpError(400, 'give either "passphrase" or "recipient" (an age public key).')
    if passphrase is not None:
        if not isinstance(passphrase, str) or len(passphrase) < MIN_PASSPHRASE:
            raise HttpError(
                400, f"the export passphrase must have at least {MIN_PASSPHRASE} characters."
            )
        return
    try:
        pyrage.x25519.Recipient.from_str(recipient)
    except (pyrage.RecipientError, TypeError, ValueError):
        raise HttpError(400, "the recipient is not an age public key (age1...).") from None


def _spend(services, principal, rid: int, body: dict):
    ports = gh.ports(services)
    registry = RemovalRequests(services.db(), gh.governance_policy(services))
    kind = "passphrase" if body.get("passphrase") is not None else "x25519"
    item = registry.get(rid)
    refused = uc.may_download(ports, principal, item)
    if refused is not None:
        raise Refused(refused)
    _check_key(body.get("passphrase"), body.get("recipient"))  # a typo burns no download
    cases = released_cases(ports, "removal.download", list(item.case_ids))
    refuse_face_holds(ports, "removal.download", cases, "export")  # issue 24: faces

    def record_spend(ticket) -> None:
        _durably(services, "governance.removal.download", principal, "success", str(rid),
                 reference=ticket.approval_reference, download=ticket.download_number,
                 remaining=ticket.downloads_remaining, recipient_kind=kind)  # fmt: skip

    ticket = registry.authorise_export(rid, gh.now(), case_levels=levels_of(cases),
                                       on_spend=record_spend)  # fmt: skip
    return registry, ticket, cases, kind


def _export(services, request, groups, body: dict):
    return export_package(services, gh.who(services, request), gh.number(groups), body)


def export_package(services, principal, rid: int, body: dict):
    """Spend one download of request `rid` for the authenticated `principal` and build its
    package: (bytes, content type, headers). REST and the web's one-time link."""
    try:
        registry, ticket, cases, kind = _spend(services, principal, rid, body)
    except Exception as exc:
        refusal = getattr(exc, "refusal", None)
        if refusal is None and isinstance(exc, ArchiveError):  # expired, used up, missing
            refusal = refusal_of("removal.download", exc)
        reason = refusal.reason if refusal is not None else getattr(exc, "message", "refused")
        audit_as(services, ACTION, principal, "denied", str(rid), reason=reason)
        if refusal is None:
            raise
        raise HttpError(status_of(refusal), refusal.reason, refusal.next) from None
    try:
        files = [
            (case_id, entry.sop_uid, data)
            for case_id, case in cases.items()
            for entry, data in study_files(services, case.orthanc_study_id)
        ]
        entries = [(c, s, hashlib.sha256(d).hexdigest()) for c, s, d in files]
        manifest = registry.export_manifest(entries, ticket, now=gh.now())
        package = build_package(files, manifest, ticket.approval.text,
                                passphrase=body.get("passphrase"),
                                recipient=body.get("recipient"),
                                **export_extras(gh.catalogue(services), list(cases),
                                                services.runtime.keyring))  # fmt: skip
    except Exception as exc:  # the download stays spent: fail closed
        audit_as(services, ACTION, principal, "failure", str(rid),
                 reference=ticket.approval_reference, download=ticket.download_number,
                 reason=type(exc).__name__)  # fmt: skip
        raise
    _durably(services, ACTION, principal, "success", str(rid),
             reference=ticket.approval_reference, download=ticket.download_number,
             instances=len(files), recipient_kind=kind)  # fmt: skip
    disposition = f'attachment; filename="{ticket.approval_reference}.tar.age"'
    return package, "application/octet-stream", {"Content-Disposition": disposition}


def _download_body(request) -> dict:
    """GET .../download: the recipient key in the query, a passphrase only in a header."""
    get = request.get("get") or {}
    headers = {k.lower(): v for k, v in (request.get("headers") or {}).items()}
    if get.get("recipient"):  # orthanc-python 4.0 leaves GET values percent-encoded
        return {"recipient": unquote_plus(get["recipient"])}
    if headers.get("x-export-passphrase"):
        return {"passphrase": headers["x-export-passphrase"]}
    return {}


def register(orthanc, services) -> None:
    gh.binary(orthanc, services, "/teaching/removals/([0-9]+)/export", "POST",
              lambda s, r, g: _export(s, r, g, gh.body(r)))  # fmt: skip
    gh.binary(orthanc, services, "/teaching/removals/([0-9]+)/download", "GET",
              lambda s, r, g: _export(s, r, g, _download_body(r)))  # fmt: skip

"""/teaching/closure/withdrawals: a patient's consent withdrawal, carried out in Orthanc.

Withdrawals crypto-shred each attachment of the named cases (its header, holding the
file's only wrapped data key, is overwritten), delete the studies from Orthanc and check
that the storage area holds none of their files. Only whom withdrawal.carry_out allows
(policies/access/actions.toml); every case is audited. Proved by
tests/integration/test_withdraw.py: orthanc.RestApiDelete from this REST callback does
not deadlock with the Python storage area (the removal callback runs on the same thread).
"""

from __future__ import annotations

import json

from archive.core import Resource, authorise
from archive.governance.usecase import audit_refusal, status_of
from archive.vault.shred import shred_header
from plugins import governance_http as gh
from plugins.catalogue_sync import catalogue_for
from plugins.closure_routes import _cases
from plugins.rest import HttpError, audit_as


def _get(orthanc, uri: str):
    return json.loads(orthanc.RestApiGet(uri))


def _instances(orthanc, study_id: str) -> list[dict]:
    try:
        return _get(orthanc, f"/studies/{study_id}/instances")
    except Exception:  # noqa: BLE001 - already gone from Orthanc
        return []


def _attachments(orthanc, instance_id: str) -> list[tuple[str, int]]:
    out = []
    for name in _get(orthanc, f"/instances/{instance_id}/attachments"):
        info = _get(orthanc, f"/instances/{instance_id}/attachments/{name}/info")
        out.append((str(info["Uuid"]), int(info["ContentType"])))
    return out


def _personnel(services, request):
    """The withdrawal's actor, if withdrawal.carry_out allows them (actions.toml)."""
    principal, ports = gh.who(services, request), gh.ports(services)
    verdict = authorise(ports.actions, principal, "withdrawal.carry_out", Resource("case"))
    if not verdict:
        audit_refusal(ports, principal, verdict, "withdrawal.remove")
        raise HttpError(status_of(verdict), verdict.reason, verdict.next)
    return principal


def _withdraw(orthanc, services, request):
    principal = _personnel(services, request)
    body = gh.body(request)
    wanted = body.get("cases")
    if not isinstance(wanted, list) or not wanted or not all(isinstance(c, str) for c in wanted):
        audit_as(services, "withdrawal.remove", principal, "denied", reason="malformed request")
        raise HttpError(400, 'give "cases": a list of case ids to withdraw.')
    known = dict(_cases(services, ("available", "quarantined", "withdrawn")))
    missing = [c for c in wanted if c not in known]
    if missing:  # case ids are pseudonymous, but the count is all the record needs
        audit_as(services, "withdrawal.remove", principal, "denied", reason="unknown case",
               unknown=len(missing))  # fmt: skip
        raise HttpError(404, f"no such case(s): {', '.join(sorted(missing))[:200]}.")
    store = services.storage
    results = []
    for case_id in wanted:
        study_id = known[case_id]
        files = [
            a for inst in _instances(orthanc, study_id) for a in _attachments(orthanc, inst["ID"])
        ]
        shredded = sum(shred_header(store.path_for(u, ct)) for u, ct in files)
        deleted = False
        if files or _instances(orthanc, study_id):
            orthanc.RestApiDelete(f"/studies/{study_id}")
            deleted = True
        left = [u for u, ct in files if store.exists(u, ct)]
        catalogue_for(services).set_status(case_id, "withdrawn", actor=principal.user)
        outcome = "success" if not left else "failure"
        audit_as(
            services, "withdrawal.remove", principal, outcome, case_id,
            files=len(files), shredded=shredded, files_left=len(left),
        )  # fmt: skip
        if left:
            raise HttpError(500, f"{len(left)} encrypted file(s) of {case_id} remain.")
        results.append(
            {"case_id": case_id, "files": len(files), "shredded": shredded, "deleted": deleted}
        )
    return {"withdrawn": results}


def register(orthanc, services) -> None:
    gh.routes(orthanc, services, {
        "/teaching/closure/withdrawals": {"POST": lambda s, r, g: _withdraw(orthanc, s, r)},
    })  # fmt: skip

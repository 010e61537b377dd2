"""/teaching/closure/transfer and /teaching/closure/withdrawals: what Orthanc must do.

Transfer sends every case of the archive (withdrawn ones excepted) by C-STORE to the
receiving Trust teaching collection named in the School Board's closure decision, and
records the manifest (SOP instance UID + SHA-256 of each file as sent). The receiving
node is taken from the decision's recipient, never from the request: a caller cannot
redirect the archive. The files are read from the vault through its instance ledger and
sent with pynetdicom (plugins/vault_files.py), never through orthanc.RestApi*
(ops/NO-RESTAPI.md).

Withdrawals crypto-shred each attachment of the named cases (its header, holding the
file's only wrapped data key, is overwritten), delete the studies from Orthanc and check
that the storage area holds none of their files. Proved by
tests/integration/test_withdraw.py: orthanc.RestApiDelete from this REST callback does
not deadlock with the Python storage area (the removal callback runs on the same thread).
"""

from __future__ import annotations

import hashlib
import json

from archive.closure.shred import shred_header
from archive.core import Refusal, Refused, Resource, authorise
from archive.dicom.send import send_entries
from archive.governance.closure import usecases as uc
from archive.governance.usecase import audit_refusal, status_of
from plugins import governance_http as gh
from plugins.catalogue_sync import catalogue_for
from plugins.rest import HttpError, audit_as
from plugins.vault_files import read_entry, study_entries


def _cases(services, statuses: tuple[str, ...]) -> list[tuple[str, str]]:
    rows = services.db().execute(
        "SELECT case_id, orthanc_study_id, status FROM catalogue_cases ORDER BY case_id"
    )
    return [(r[0], r[1]) for r in rows if r[2] in statuses]


# -- transfer ---------------------------------------------------------------------------
def _unavailable(reason: str) -> Refused:
    return Refused(Refusal("closure.transfer", reason, "Check that the receiving node is "
                           "listening, then run the transfer again.", "unavailable"))  # fmt: skip


def _by_cstore(services):
    """The C-STORE deliverer: every held case, read from the vault, to the node of the
    collection the Board named (never one from the request)."""

    def deliver(decision, recipient):
        node = recipient.dicom_node
        if node is None:
            raise Refused(Refusal("closure.transfer", f"{recipient.organisation} has no DICOM "
                                  "node on record.", "Record it with `archive recipients`.",
                                  "state"))  # fmt: skip
        manifest: list[list[str]] = []
        for case_id, study_id in _cases(services, ("available", "quarantined")):
            entries = study_entries(services, study_id)
            digests: dict[str, str] = {}

            def read(entry, _digests=digests):
                data = read_entry(services, entry)
                _digests[entry.uuid] = hashlib.sha256(data).hexdigest()
                return data

            try:
                answer = send_entries(entries, read, host=node.host, port=int(node.port),
                                      called_aet=node.aet,
                                      calling_aet=services.config.dicom.aet)  # fmt: skip
            except Exception:  # noqa: BLE001 - the receiver refused or is down
                raise _unavailable(f"{recipient.organisation} ({node}) did not accept case "
                                   f"{case_id}; nothing was recorded.") from None  # fmt: skip
            if answer.failed:
                raise _unavailable(f"{recipient.organisation} refused instances of {case_id}.")
            manifest.extend([case_id, e.sop_uid, digests[e.uuid]] for e in entries)
        return "cstore", manifest, {"node": str(node)}

    return deliver


def _transfer(services, request, groups):
    return gh.encode(uc.transfer(gh.ports(services), gh.who(services, request),
                                 _by_cstore(services)))  # fmt: skip


# -- withdrawal -------------------------------------------------------------------------
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
        "/teaching/closure/transfer": {"POST": _transfer},
        "/teaching/closure/withdrawals": {"POST": lambda s, r, g: _withdraw(orthanc, s, r)},
    })  # fmt: skip

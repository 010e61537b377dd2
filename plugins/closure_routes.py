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
from datetime import UTC, datetime

import orthanc

from archive.closure.auditing import hash_for_audit
from archive.closure.shred import shred_header
from archive.dicom.send import send_entries
from archive.errors import ArchiveError
from archive.governance import ClosureRecords, load_policy
from archive.governance.sharing.recipients import Recipients
from plugins.catalogue_sync import catalogue_for
from plugins.rest import HttpError, audit_as, principal_of, request_json, route
from plugins.vault_files import read_entry, study_entries

PERSONNEL = "personnel"


def _now() -> datetime:
    return datetime.now(UTC)


_audit = audit_as  # one shared recipe: plugins/rest.py


def _personnel(services, request):
    principal = principal_of(services, request)
    if PERSONNEL not in principal.roles:
        raise HttpError(403, "only school personnel may run closure and withdrawal steps.")
    return principal


def _get(uri: str):
    return json.loads(orthanc.RestApiGet(uri))


def _cases(services, statuses: tuple[str, ...]) -> list[tuple[str, str]]:
    rows = services.db().execute(
        "SELECT case_id, orthanc_study_id, status FROM catalogue_cases ORDER BY case_id"
    )
    return [(r[0], r[1]) for r in rows if r[2] in statuses]


def _instances(study_id: str) -> list[dict]:
    try:
        return _get(f"/studies/{study_id}/instances")
    except Exception:  # noqa: BLE001 - already gone from Orthanc
        return []


# -- transfer ---------------------------------------------------------------------------
def _transfer(services, request, **_):
    principal = _personnel(services, request)
    policy = load_policy(services.config.policies_dir)
    records = ClosureRecords(services.db(), policy)
    decision = records.current_decision()
    if decision is None or decision.outcome != "transfer":
        _audit(services, "closure.transfer", principal, "denied", reason="no transfer decision")
        raise HttpError(
            409, "no School Board decision to transfer the archive is recorded; record it "
            "with `archive close decide --outcome transfer` first."
        )  # fmt: skip
    recipient = Recipients(services.db(), policy).get(decision.receiving_recipient_id)
    node = recipient.dicom_node
    if node is None:
        _audit(services, "closure.transfer", principal, "denied", reason="recipient has no node")
        raise HttpError(409, f"{recipient.organisation} has no DICOM node on record.")
    manifest: list[list[str]] = []
    for case_id, study_id in _cases(services, ("available", "quarantined")):
        entries = study_entries(services, study_id)
        if not entries:
            continue
        digests: dict[str, str] = {}

        def read(entry, _digests=digests):
            data = read_entry(services, entry)
            _digests[entry.uuid] = hashlib.sha256(data).hexdigest()
            return data

        try:
            answer = send_entries(
                entries, read, host=node.host, port=int(node.port), called_aet=node.aet,
                calling_aet=services.config.dicom.aet,
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - the receiver refused or is down
            _audit(services, "closure.transfer", principal, "failure", case_id)
            raise HttpError(
                502, f"{recipient.organisation} ({node}) did not accept case {case_id}; "
                "is their node listening? Nothing was recorded; run the transfer again."
            ) from None  # fmt: skip
        if answer.failed:
            _audit(services, "closure.transfer", principal, "failure", case_id)
            raise HttpError(502, f"{recipient.organisation} refused instances of {case_id}.")
        manifest.extend([case_id, e.sop_uid, digests[e.uuid]] for e in entries)
    try:
        transfer = records.record_transfer(
            manifest, "cstore", executed_by=principal.user, now=_now()
        )
    except ArchiveError:
        _audit(services, "closure.transfer", principal, "failure", reason="manifest refused")
        raise
    entries = records.transfer_manifest(transfer.id)
    _audit(
        services, "closure.transfer", principal, "success", f"transfer {transfer.id}",
        instances=transfer.instance_count,
        manifest_sha256=hash_for_audit(transfer.manifest_sha256),
        recipient=recipient.organisation, node=str(node),
    )  # fmt: skip
    from archive.governance import manifest as mf

    return {
        "transfer_id": transfer.id,
        "method": "cstore",
        "organisation": recipient.organisation,
        "node": str(node),
        "instance_count": transfer.instance_count,
        "manifest_sha256": transfer.manifest_sha256,
        "manifest": mf.as_dict(entries),
    }


# -- withdrawal -------------------------------------------------------------------------
def _attachments(instance_id: str) -> list[tuple[str, int]]:
    out = []
    for name in _get(f"/instances/{instance_id}/attachments"):
        info = _get(f"/instances/{instance_id}/attachments/{name}/info")
        out.append((str(info["Uuid"]), int(info["ContentType"])))
    return out


def _withdraw(services, request, **_):
    principal = _personnel(services, request)
    body = request_json(request)
    wanted = body.get("cases")
    if not isinstance(wanted, list) or not wanted or not all(isinstance(c, str) for c in wanted):
        _audit(services, "withdrawal.remove", principal, "denied", reason="malformed request")
        raise HttpError(400, 'give "cases": a list of case ids to withdraw.')
    known = dict(_cases(services, ("available", "quarantined", "withdrawn")))
    missing = [c for c in wanted if c not in known]
    if missing:  # case ids are pseudonymous, but the count is all the record needs
        _audit(services, "withdrawal.remove", principal, "denied", reason="unknown case",
               unknown=len(missing))  # fmt: skip
        raise HttpError(404, f"no such case(s): {', '.join(sorted(missing))[:200]}.")
    store = services.storage
    results = []
    for case_id in wanted:
        study_id = known[case_id]
        files = [a for inst in _instances(study_id) for a in _attachments(inst["ID"])]
        shredded = sum(shred_header(store.path_for(u, ct)) for u, ct in files)
        deleted = False
        if files or _instances(study_id):
            orthanc.RestApiDelete(f"/studies/{study_id}")
            deleted = True
        left = [u for u, ct in files if store.exists(u, ct)]
        catalogue_for(services).set_status(case_id, "withdrawn", actor=principal.user)
        outcome = "success" if not left else "failure"
        _audit(
            services, "withdrawal.remove", principal, outcome, case_id,
            files=len(files), shredded=shredded, files_left=len(left),
        )  # fmt: skip
        if left:
            raise HttpError(500, f"{len(left)} encrypted file(s) of {case_id} remain.")
        results.append(
            {"case_id": case_id, "files": len(files), "shredded": shredded, "deleted": deleted}
        )
    return {"withdrawn": results}


def register(services) -> None:
    # plugins.rest.route calls handler(uri=, request=, groups=): bind services here.
    def bind(fn):
        return lambda **kw: fn(services, **kw)

    route(services, "/teaching/closure/transfer", {"POST": bind(_transfer)})
    route(services, "/teaching/closure/withdrawals", {"POST": bind(_withdraw)})

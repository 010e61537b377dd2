"""/teaching/shares/log, revocations, confirmations and execution of an approved share.

Execution (archive.governance.sharing.usecases.execute_share, share.execute) checks
every rule again, then this adapter delivers: by C-STORE to the recipient's registered
node (files read from the vault through its instance ledger and sent with pynetdicom,
plugins/vault_files.py; never orthanc.RestApi*, ops/NO-RESTAPI.md), or as an age package
to the recipient's recorded public key; the use case enters the manifest in the register.
"""

from __future__ import annotations

import hashlib

from archive.core import Refusal, Refused
from archive.export import build_package
from archive.governance.sharing import usecases as uc
from archive.governance.sharing.delivery import recipient_node_name, share_package_manifest
from archive.governance.sharing.records import Shares, share_log_csv
from plugins import governance_http as gh
from plugins.rest import audit_as
from plugins.vault_files import send_to_node, study_files


def _shares(services) -> Shares:
    return Shares(services.db(), gh.governance_policy(services))


def _log(services, request, groups):
    principal = gh.who(services, request)
    entries = _shares(services).share_log()
    audit_as(services, "governance.share.log", principal, "success", entries=len(entries))
    return {"shares": entries}


def _log_csv(services, request, groups):
    _log_json = _log(services, request, groups)
    return share_log_csv(_log_json["shares"]).encode(), "text/csv", {}


def _revoke(services, request, groups):
    body = gh.body(request)
    return dict(gh.encode(uc.revoke(
        gh.ports(services), gh.who(services, request), gh.number(groups),
        body.get("kind", "revocation"), body.get("reason", ""),
    )))  # fmt: skip


def _confirm(services, request, groups):
    body = gh.body(request)
    return dict(gh.encode(uc.confirm(
        gh.ports(services), gh.who(services, request), gh.number(groups),
        recipient_officer=body.get("confirmed_by", ""),
        confirmed_on=gh.day(body.get("confirmed_on"), "confirmed_on"),
        evidence_ref=body.get("evidence_ref", ""),
    )))  # fmt: skip


def _unavailable(reason: str, next_step: str) -> Refused:
    return Refused(Refusal("share.execute", reason, next_step, "unavailable"))


def _deliver(services, shares):
    def deliver(execution: uc.Execution):
        ticket = execution.ticket
        files = [
            (case_id, entry, data)
            for case_id, study in execution.studies.items()
            for entry, data in study_files(services, study)
        ]
        entries = [(c, e.sop_uid, hashlib.sha256(d).hexdigest()) for c, e, d in files]
        if execution.method == "package":
            manifest = share_package_manifest(shares, ticket, entries, now=gh.now())
            package = build_package([(c, e.sop_uid, d) for c, e, d in files], manifest,
                                    ticket.decision.decision_text,
                                    recipient=ticket.recipient.public_key)  # fmt: skip
            return entries, package
        node = _registered_node(services, ticket.recipient)
        try:
            answer = send_to_node(services, [e for _, e, _ in files], node)
        except Exception:  # noqa: BLE001 - the recipient refused or is down
            raise _unavailable(
                f"the recipient's node {ticket.recipient.dicom_node} did not "
                "accept the share; nothing was entered in the register.",
                "Check that their node is listening, then execute again.",
            ) from None
        if answer.failed:
            raise _unavailable(
                f"the recipient refused {answer.failed} of {len(files)} "
                "instance(s); the share is not registered as complete.",
                "Ask the recipient to delete the partial copy, then retry.",
            )
        return entries, None

    return deliver


def _registered_node(services, recipient):
    """The access room's node for the recipient, exactly as the register records it."""
    name, node = recipient_node_name(recipient.id), recipient.dicom_node
    entry = {n.name: n for n in services.access_store().list_dicom_nodes()}.get(name)
    if entry is None or (entry.aet, str(entry.host), int(entry.port)) != (
        node.aet, str(node.host), int(node.port)
    ):  # fmt: skip
        raise Refused(Refusal("share.execute", f"the archive's DICOM node register does not "
                              f"hold {name} as {node}.", "Register the recipient's node again "
                              "(staff) before executing the share.", "conflict"))  # fmt: skip
    return entry


def _execute(services, request, groups):
    body, pid = gh.body(request), gh.number(groups)
    shares = _shares(services)
    result = gh.encode(uc.execute_share(
        gh.ports(services), gh.who(services, request), pid, body.get("method", "cstore"),
        _deliver(services, shares),
    ))  # fmt: skip
    package = result.pop("package")
    if package is None:
        return result
    disposition = f'attachment; filename="{uc.reference(pid)}.tar.age"'
    return package, "application/octet-stream", {"Content-Disposition": disposition}


def register(orthanc, services) -> None:
    gh.routes(orthanc, services, {
        "/teaching/shares/log": {"GET": _log},
        "/teaching/shares/log/([0-9]+)/revoke": {"POST": _revoke},
        "/teaching/shares/requests/([0-9]+)/confirm": {"POST": _confirm},
    })  # fmt: skip
    gh.binary(orthanc, services, "/teaching/shares/log.csv", "GET", _log_csv)
    gh.binary(orthanc, services, "/teaching/shares/([0-9]+)/execute", "POST", _execute)

"""/teaching/closure/transfer and /teaching/closure/withdrawals: what Orthanc must do.

Transfer sends every case of the archive (withdrawn ones excepted) by C-STORE to the
receiving Trust teaching collection named in the School Board's closure decision, and
records the manifest (SOP instance UID + SHA-256 of each file as sent). The receiving
node is taken from the decision's recipient, never from the request: a caller cannot
redirect the archive. The files are read from the vault through its instance ledger and
sent with pynetdicom (plugins/vault_files.py), never through orthanc.RestApi*
(ops/NO-RESTAPI.md).
Consent withdrawals are plugins/withdrawal_routes.py.
"""

from __future__ import annotations

import hashlib

from archive.catalogue.inventory import holdings
from archive.core import Refusal, Refused
from archive.dicom.send import send_entries
from archive.governance.closure import usecases as uc
from plugins import governance_http as gh
from plugins.vault_files import read_entry, study_entries


def _cases(services, statuses: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(c.case_id, c.orthanc_study_id) for c in holdings(services.db(), statuses)]


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


def register(orthanc, services) -> None:
    gh.routes(orthanc, services, {
        "/teaching/closure/transfer": {"POST": _transfer},
    })  # fmt: skip

"""REST for pulls: decode, call archive.pulls.usecases, encode (issue 21).

    POST /teaching/pulls  {"cases": [...], "workstation": name}   send released cases
    GET  /teaching/pulls                                          the pull inventory

A pull sends a released case's de-identified stored files to a registered suite
workstation by C-STORE, read from the vault through its instance ledger and sent with
pynetdicom (plugins/vault_files.py): never through orthanc.RestApi*, which froze the
archive (ops/NO-RESTAPI.md). Refusals are `{"error", "next"}` with their status.
"""

from __future__ import annotations

from archive.access.nodes import workstations
from archive.catalogue import Catalogue, load_vocabulary
from archive.core import Ports
from archive.governance import PullInventory
from archive.pulls import usecases as up
from plugins.rest import outcome, principal_of, request_json, route

_vocabularies: dict[str, object] = {}


def _ports(services, source: str) -> Ports:
    return Ports(db=services.db(), audit=services.runtime.audit,
                 policies_dir=services.config.policies_dir, source=source)  # fmt: skip


def pull_room(services, source: str = "rest") -> up.PullRoom:
    """The pull use cases on this thread's connection (the web calls this too)."""
    from plugins.vault_files import send_to_node, study_entries

    policies = str(services.config.policies_dir)
    vocabulary = _vocabularies.get(policies) or _vocabularies.setdefault(
        policies, load_vocabulary(services.config.policies_dir)
    )
    catalogue = Catalogue(services.db(), services.config.school_prefix, vocabulary=vocabulary)

    def workstation(name: str):
        nodes = {n.name: n for n in services.access_store().list_dicom_nodes()}
        node = nodes.get(name)
        if node is None or not node.may_query or not workstations(services.db()).exists(name):
            return None
        return node

    def send(case, node) -> up.Sent:
        answer = send_to_node(services, study_entries(services, case.orthanc_study_id), node)
        return up.Sent(answer.sent, answer.failed, tuple(answer.reasons))

    def stored(case) -> bool:
        return bool(study_entries(services, case.orthanc_study_id))

    return up.PullRoom(_ports(services, source), catalogue, workstation, send, stored)


def register(orthanc, services) -> None:
    PullInventory(services.db())  # the pull log's tables now: a broken DB stops the start
    workstations(services.db())

    def pull(uri: str, request: dict, groups: list[str]) -> dict:
        body = request_json(request)
        result = up.pull_cases(pull_room(services), principal_of(services, request),
                               body.get("workstation"), body.get("cases"))  # fmt: skip
        return outcome(result).to_dict()

    def inventory(uri: str, request: dict, groups: list[str]) -> dict:
        principal = principal_of(services, request)
        return outcome(up.pull_inventory(_ports(services, "rest"), principal)).to_dict()

    route(services, "/teaching/pulls", {"POST": pull, "GET": inventory})

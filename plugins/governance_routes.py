"""/teaching/pulls: released cases to the suite's workstations.

Removals (images leaving the suite) are plugins/removal_routes.py and
removal_export_routes.py (issue 21).

Pulls send a released case's de-identified stored files to a registered suite
workstation by C-STORE, read from the vault through its instance ledger and sent with
pynetdicom to the node the access room registers (plugins/vault_files.py): never through
orthanc.RestApi*, which froze the archive (ops/NO-RESTAPI.md). Every outcome is audited
with the named user.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from archive.catalogue import Catalogue, load_vocabulary
from archive.errors import ArchiveError
from archive.governance import PullInventory, load_policy
from archive.governance.workstations import Workstations
from plugins.rest import HttpError, audit_as, principal_of, request_json, route
from plugins.vault_files import send_to_node, study_entries

_cache: dict[str, object] = {}
_lock = threading.Lock()
PULL_ROLES = {"personnel", "trainer", "registrar", "other_speciality"}


def _now() -> datetime:
    return datetime.now(UTC)


def _vocabulary(services):
    with _lock:
        if "vocabulary" not in _cache:
            _cache["vocabulary"] = load_vocabulary(services.config.policies_dir)
        return _cache["vocabulary"]


def _policy(services):
    with _lock:
        if "policy" not in _cache:
            _cache["policy"] = load_policy(services.config.policies_dir)
        return _cache["policy"]


def _catalogue(services) -> Catalogue:
    return Catalogue(services.db(), services.config.school_prefix, vocabulary=_vocabulary(services))


_audit = audit_as  # one shared recipe: plugins/rest.py


def _released_case(catalogue: Catalogue, case_id: str):
    """The case if it is released (available); unknown and unreleased read the same."""
    if not isinstance(case_id, str) or not case_id.strip():
        raise HttpError(400, "case ids must be non-empty strings.")
    try:
        case = catalogue.get(case_id)
    except ArchiveError:
        case = None
    if case is None or case.status != "available":
        raise HttpError(404, f"case {case_id} is not an available (released) case.")
    return case


def _workstation(services, name: str):
    if not isinstance(name, str) or not name:
        raise HttpError(400, 'give "workstation": the name of a registered suite workstation.')
    nodes = {n.name: n for n in services.access_store().list_dicom_nodes()}
    node = nodes.get(name)
    if node is None or not node.may_query or not Workstations(services.db()).exists(name):
        raise HttpError(404, f"{name!r} is not a registered suite workstation.")
    return node


# -- pulls ------------------------------------------------------------------------------
def _pull(services, request, **_):
    body = request_json(request)
    return pull_cases(services, principal_of(services, request), body.get("workstation"),
                      body.get("cases"))  # fmt: skip


def pull_cases(services, principal, ws, cases) -> dict:
    """Send released cases to a registered workstation as `principal` (REST and web UI)."""
    if not principal.trained or not PULL_ROLES & set(principal.roles):
        _audit(services, "governance.pull", principal, "denied", detail_reason="untrained")
        raise HttpError(403, "only trained users may pull cases; record the training first.")
    if not isinstance(cases, list) or not cases:
        raise HttpError(400, 'give "cases": a list of case ids.')
    node = _workstation(services, ws)
    catalogue = _catalogue(services)
    chosen = []
    for case_id in cases:
        try:
            chosen.append(_released_case(catalogue, case_id))
        except HttpError:
            _audit(
                services, "governance.pull", principal, "denied", str(case_id)[:64], workstation=ws
            )
            raise
    inventory = PullInventory(services.db())
    results = []
    for case in chosen:
        entries = study_entries(services, case.orthanc_study_id)
        if not entries:
            _audit(services, "governance.pull", principal, "failure", case.case_id, workstation=ws)
            raise HttpError(
                409, f"case {case.case_id} has no stored files in the vault; ask school "
                "personnel to run `archive fsck`.",
            )  # fmt: skip
        try:
            answer = send_to_node(services, entries, node)
        except Exception:  # noqa: BLE001 - the workstation refused or is down
            _audit(services, "governance.pull", principal, "failure", case.case_id, workstation=ws)
            raise HttpError(
                502, f"workstation {ws} did not accept case {case.case_id}; is it listening?"
            ) from None
        failed, sent = answer.failed, answer.sent
        if failed:
            why = "; ".join(sorted(set(answer.reasons)))[:200]
            _audit(services, "governance.pull", principal, "failure", case.case_id,
                   workstation=ws, why=why)  # fmt: skip
            raise HttpError(
                502, f"workstation {ws} refused {failed} instance(s) of {case.case_id} ({why})."
            )
        pull_id = inventory.record_pull(case.case_id, ws, principal.user, _now())
        _audit(
            services, "governance.pull", principal, "success", case.case_id,
            workstation=ws, instances=sent, pull_id=pull_id,
        )  # fmt: skip
        results.append({"case_id": case.case_id, "instances": sent, "pull_id": pull_id})
    return {"workstation": ws, "aet": node.aet, "pulled": results}


def _inventory(services, request, **_):
    principal_of(services, request)
    inventory = PullInventory(services.db())
    return {"inventory": inventory.inventory(), "pulls": inventory.pulls()}


def register(services) -> None:
    _policy(services)  # a broken governance policy stops Orthanc: fail closed
    PullInventory(services.db())
    Workstations(services.db())

    def bind(fn):
        return lambda **kw: fn(services, **kw)

    route(services, "/teaching/pulls", {"POST": bind(_pull), "GET": bind(_inventory)})

"""/teaching/pulls and /teaching/removals: images leave the archive only through here.

Pulls send a released case's de-identified stored files to a registered suite
workstation by C-STORE, read from the vault through its instance ledger and sent with
pynetdicom to the node the access room registers (plugins/vault_files.py): never through
orthanc.RestApi*, which froze the archive (ops/NO-RESTAPI.md). Removals are the
written-approval workflow of archive.governance.removals; the export route spends one
download of an approved, unexpired request and answers an age-encrypted package built in
memory from the vault's files. Every outcome is audited with the named user.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime
from urllib.parse import unquote_plus

import orthanc
import pyrage

from archive.catalogue import Catalogue, load_vocabulary
from archive.errors import ArchiveError
from archive.export import build_package
from archive.export.package import MIN_PASSPHRASE
from archive.governance import PullInventory, RemovalRequests, load_policy
from archive.governance.workstations import Workstations
from plugins.rest import HttpError, answer_json, audit_as, principal_of, request_json, route
from plugins.vault_files import send_to_node, study_entries, study_files

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


# -- removals ---------------------------------------------------------------------------
def _registry(services) -> RemovalRequests:
    return RemovalRequests(services.db(), _policy(services))


def _levels(services, case_ids) -> dict[str, str]:
    catalogue = _catalogue(services)
    return {c.case_id: c.level for c in (_released_case(catalogue, cid) for cid in case_ids)}


def _request_id(groups) -> int:
    return int(groups[0])


def _create(services, request, **_):
    return create_removal(services, principal_of(services, request), request_json(request))


def create_removal(services, principal, body: dict) -> dict:
    """Record a removal request by `principal` (REST and web UI), audited."""
    cases = body.get("cases")
    if not isinstance(cases, list) or not cases:
        raise HttpError(400, 'give "cases": a list of case ids.')
    try:
        levels = _levels(services, cases)
        made = _registry(services).create(
            cases,
            body.get("purpose", ""),
            body.get("destination", ""),
            principal.user,
            principal.roles,
            case_levels=levels,
            now=_now(),
        )
    except (ArchiveError, HttpError) as exc:
        _audit(
            services, "governance.removal.request", principal, "denied", reason=type(exc).__name__
        )
        raise
    _audit(
        services, "governance.removal.request", principal, "success", str(made.id),
        purpose=made.purpose, cases=len(made.case_ids),
    )  # fmt: skip
    return made.to_dict()


def _list(services, request, **_):
    principal_of(services, request)
    rows = services.db().execute("SELECT id FROM governance_removal_requests ORDER BY id")
    registry = _registry(services)
    now = _now()
    out = []
    for (rid,) in rows.fetchall():
        item = registry.get(rid)
        out.append({**item.to_dict(), "status": item.status_at(now)})
    return {"removals": out}


def _show(services, request, groups, **_):
    principal_of(services, request)
    registry = _registry(services)
    item = registry.get(_request_id(groups))
    return {
        **item.to_dict(),
        "status": item.status_at(_now()),
        "downloads": registry.downloads(item.id),
    }


def _decide(kind: str):
    def handler(services, request, groups, **_):
        return decide_removal(
            services, principal_of(services, request), kind, _request_id(groups),
            request_json(request),
        )  # fmt: skip

    return handler


def decide_removal(services, principal, kind: str, rid: int, body: dict) -> dict:
    """Approve or refuse removal request `rid` as `principal` (REST and web UI), audited."""
    registry = _registry(services)
    action = f"governance.removal.{kind}"
    try:
        if kind == "approve":
            expires = body.get("expires_at")
            expires_at = datetime.fromisoformat(expires) if expires else None
            registry.approve(
                rid,
                principal.user,
                principal.roles,
                body.get("text", ""),
                expires_at,
                body.get("max_downloads"),
                now=_now(),
            )
        else:
            registry.refuse(
                rid, principal.user, principal.roles, body.get("reason", ""), now=_now()
            )
    except (ArchiveError, ValueError) as exc:
        _audit(services, action, principal, "denied", str(rid), reason=type(exc).__name__)
        if isinstance(exc, ValueError) and not isinstance(exc, ArchiveError):
            raise HttpError(400, "expires_at must be an ISO date-time with a zone.") from None
        raise
    _audit(services, action, principal, "success", str(rid))
    return registry.get(rid).to_dict()


def _audit_durably(services, action, principal, outcome, target, **detail) -> None:
    """Like audit_as, but on disk (fsynced) before returning, past the group commit:
    for records that must survive a power cut that follows them."""
    from archive.audit import AuditEvent

    event = AuditEvent(
        action=action, outcome=outcome, actor=principal.user, roles=tuple(principal.roles),
        source="rest", target=target, detail=detail,
    )  # fmt: skip
    services.runtime.audit.append(event, sync=True)


def _check_key(passphrase, recipient) -> None:
    """Refuse a missing or malformed package key (HTTP 400) before anything is spent."""
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


def _export(services, request, groups, body: dict) -> tuple[bytes, str]:
    """Spend one download and build the encrypted package; returns (package, reference).

    Crash safety (issue 14): the spend and its audit record ("governance.removal.download",
    durable) commit together before any image is read; a download spent but never
    delivered (power cut, error) stays spent - it counts against max_downloads, fail
    closed. "governance.removal.export" then says what became of that download: success
    (package built and handed to Orthanc to send; durable, so whatever was delivered is
    on record) or failure. The package only ever exists in memory here.
    """
    return export_package(services, principal_of(services, request), _request_id(groups), body)


def export_package(services, principal, rid: int, body: dict) -> tuple[bytes, str]:
    """`_export` for an authenticated `principal` (REST and the web's one-time link)."""
    registry = _registry(services)
    kind = "passphrase" if body.get("passphrase") is not None else "x25519"

    def record_spend(ticket) -> None:
        _audit_durably(
            services, "governance.removal.download", principal, "success", str(rid),
            reference=ticket.approval_reference, download=ticket.download_number,
            remaining=ticket.downloads_remaining, recipient_kind=kind,
        )  # fmt: skip

    action = "governance.removal.export"
    try:
        item = registry.get(rid)
        if principal.user.casefold() != item.requester.casefold():
            raise HttpError(403, "only the requester may export an approved removal.")
        passphrase, recipient = body.get("passphrase"), body.get("recipient")
        _check_key(passphrase, recipient)  # before the spend: a typo must not burn a download
        levels = _levels(services, item.case_ids)
        ticket = registry.authorise_export(rid, _now(), case_levels=levels, on_spend=record_spend)
    except (ArchiveError, HttpError) as exc:
        _audit(services, action, principal, "denied", str(rid), reason=type(exc).__name__)
        raise
    try:
        catalogue = _catalogue(services)
        files = []
        for case_id in ticket.case_ids:
            study = catalogue.get(case_id).orthanc_study_id
            for entry, data in study_files(services, study):
                files.append((case_id, entry.sop_uid, data))
        entries = [(c, s, hashlib.sha256(d).hexdigest()) for c, s, d in files]
        manifest = registry.export_manifest(entries, ticket, now=_now())
        package = build_package(
            files, manifest, ticket.approval.text, passphrase=passphrase, recipient=recipient
        )
    except Exception as exc:  # the download stays spent: fail closed
        _audit(
            services, action, principal, "failure", str(rid),
            reference=ticket.approval_reference, download=ticket.download_number,
            reason=type(exc).__name__,
        )  # fmt: skip
        raise
    _audit_durably(
        services, action, principal, "success", str(rid),
        reference=ticket.approval_reference, download=ticket.download_number,
        instances=len(files), recipient_kind=kind,
    )  # fmt: skip
    return package, ticket.approval_reference


def _binary_route(services, pattern: str, method: str, body_of) -> None:
    def callback(output, uri, **request) -> None:
        if request.get("method") != method:
            output.SendMethodNotAllowed(method)
            return
        try:
            package, reference = _export(
                services, request, request.get("groups") or [], body_of(request)
            )
            output.SetHttpHeader(
                "Content-Disposition", f'attachment; filename="{reference}.tar.age"'
            )
            output.AnswerBuffer(package, "application/octet-stream")
        except HttpError as exc:
            answer_json(output, {"error": exc.message}, exc.status)
        except ArchiveError as exc:
            answer_json(output, {"error": str(exc)}, 400)
        except Exception as exc:  # noqa: BLE001
            orthanc.LogError(f"teaching-archive: export: {type(exc).__name__}")
            answer_json(output, {"error": "internal error; see the archive's log"}, 500)

    orthanc.RegisterRestCallback(pattern, callback)


def _download_body(request) -> dict:
    """GET .../download: the recipient key in the query, a passphrase only in a header."""
    get = request.get("get") or {}
    headers = {k.lower(): v for k, v in (request.get("headers") or {}).items()}
    if get.get("recipient"):  # orthanc-python 4.0 leaves GET values percent-encoded
        return {"recipient": unquote_plus(get["recipient"])}
    if headers.get("x-export-passphrase"):
        return {"passphrase": headers["x-export-passphrase"]}
    return {}


def register(services) -> None:
    _policy(services)  # a broken governance policy stops Orthanc: fail closed
    PullInventory(services.db())
    Workstations(services.db())

    def bind(fn):
        return lambda **kw: fn(services, **kw)

    route(services, "/teaching/pulls", {"POST": bind(_pull), "GET": bind(_inventory)})
    route(services, "/teaching/removals", {"POST": bind(_create), "GET": bind(_list)})
    route(services, "/teaching/removals/([0-9]+)", {"GET": bind(_show)})
    route(services, "/teaching/removals/([0-9]+)/approve", {"POST": bind(_decide("approve"))})
    route(services, "/teaching/removals/([0-9]+)/refuse", {"POST": bind(_decide("refuse"))})
    _binary_route(services, "/teaching/removals/([0-9]+)/export", "POST", request_json)
    _binary_route(services, "/teaching/removals/([0-9]+)/download", "GET", _download_body)

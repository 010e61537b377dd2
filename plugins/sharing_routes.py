"""/teaching/recipients and /teaching/shares: third-party sharing (issue 9) over REST.

Personnel keep the register of recipients; the School Board (board_member) proposes,
records its decisions and the signed undertakings; personnel execute an approved share.
Execution checks every rule again (archive.governance.sharing.authorise_share: quorum
without the proposer, a recorded undertaking, key-coded cases only to recipients with a
data-sharing agreement, never to a commercial recipient), then sends the released
cases' stored DICOM either by C-STORE to the recipient's registered node (read from the
vault through its instance ledger and sent with pynetdicom, plugins/vault_files.py;
never orthanc.RestApi*, see ops/NO-RESTAPI.md) or as an age package to the recipient's
recorded public key, and enters the manifest (SOP instance UIDs + SHA-256 of the bytes
sent) in the share register. Every outcome is audited with the named user.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from datetime import UTC, date, datetime

import orthanc

from archive.catalogue import Catalogue, load_vocabulary
from archive.errors import ArchiveError
from archive.export import build_package
from archive.governance import DicomNode, Recipients, Shares, load_policy
from archive.governance.board import BoardVote
from archive.governance.share_delivery import (
    check_undertaking_organisation,
    recipient_node_name,
    share_package_manifest,
    store_signed_undertaking,
    undertakings_dir,
)
from archive.governance.sharing import proposal_view, share_log_csv
from archive.vault.ledger import LedgerEntry
from plugins.face_holds import check_face_holds
from plugins.rest import HttpError, answer_json, audit_as, principal_of, request_json, route
from plugins.vault_files import send_to_node, study_files

_cache: dict[str, object] = {}
_lock = threading.Lock()
RECIPIENT_ROLES = {"personnel"}
BOARD_ROLES = {"board_member"}
EXECUTE_ROLES = {"personnel"}


def _now() -> datetime:
    return datetime.now(UTC)


def _cached(name: str, make):
    with _lock:
        if name not in _cache:
            _cache[name] = make()
        return _cache[name]


def _policy(services):
    return _cached("policy", lambda: load_policy(services.config.policies_dir))


def _shares(services) -> Shares:
    return Shares(services.db(), _policy(services))


def _recipients(services) -> Recipients:
    return Recipients(services.db(), _policy(services))


def _catalogue(services) -> Catalogue:
    vocabulary = _cached("vocabulary", lambda: load_vocabulary(services.config.policies_dir))
    return Catalogue(services.db(), services.config.school_prefix, vocabulary=vocabulary)


def _vault(services):
    def make():
        from archive.vault.store import EncryptedStore

        return EncryptedStore(undertakings_dir(services.home.data_dir), services.runtime.keyring)

    return _cached("vault", make)


_audit = audit_as  # one shared recipe: plugins/rest.py


def _require(principal, roles: set[str], what: str) -> None:
    if not roles & set(principal.roles):
        raise HttpError(403, f"only {' or '.join(sorted(roles))} may {what}.")


def _id(groups) -> int:
    return int(groups[0])


def _day(value, name: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise HttpError(400, f'"{name}" must be a date such as 2025-09-30.') from None


def _guarded(services, action: str, principal, target, fn):
    """Run one domain step; audit a refusal (with its rule's class) and re-raise."""
    try:
        return fn()
    except (ArchiveError, HttpError) as exc:
        _audit(services, action, principal, "denied", target, reason=type(exc).__name__)
        raise


# -- recipients -------------------------------------------------------------------------
def _recipient_add(services, request, **_):
    principal = principal_of(services, request)
    body = request_json(request)

    def add():
        _require(principal, RECIPIENT_ROLES, "add recipients")
        node = body.get("dicom_node")
        dicom = None
        if node is not None:
            if not isinstance(node, dict):
                raise HttpError(400, '"dicom_node" is {"aet": ..., "host": ..., "port": ...}.')
            dicom = DicomNode(node.get("aet"), node.get("host"), node.get("port"))
        made = _recipients(services).add(
            body.get("organisation", ""),
            body.get("kind", ""),
            body.get("contact", ""),
            dicom_node=dicom,
            public_key=body.get("public_key"),
            data_sharing_agreement=bool(body.get("data_sharing_agreement", False)),
            added_by=principal.user,
            now=_now(),
        )
        if dicom is not None:  # send-only: it may never call the archive's DICOM front
            services.access_store().add_dicom_node(
                recipient_node_name(made.id), dicom.aet, dicom.host, dicom.port
            )
        return made

    made = _guarded(services, "governance.recipient.add", principal, None, add)
    _audit(
        services, "governance.recipient.add", principal, "success", str(made.id),
        kind=made.kind, agreement=made.data_sharing_agreement,
    )  # fmt: skip
    return made.to_dict()


def _recipient_list(services, request, **_):
    principal_of(services, request)
    return {"recipients": [r.to_dict() for r in _recipients(services).list(include_inactive=True)]}


def _recipient_show(services, request, groups, **_):
    principal_of(services, request)
    return _recipients(services).get(_id(groups)).to_dict()


def _recipient_agreement(services, request, groups, **_):
    principal = principal_of(services, request)
    body = request_json(request)
    rid = _id(groups)

    def change():
        _require(principal, RECIPIENT_ROLES, "record data-sharing agreements")
        on_file = body.get("on_file")
        if not isinstance(on_file, bool):
            raise HttpError(400, 'give "on_file": true or false.')
        return _recipients(services).set_data_sharing_agreement(rid, on_file)

    r = _guarded(services, "governance.recipient.agreement", principal, str(rid), change)
    _audit(
        services, "governance.recipient.agreement", principal, "success", str(rid),
        on_file=r.data_sharing_agreement,
    )  # fmt: skip
    return r.to_dict()


def _recipient_deactivate(services, request, groups, **_):
    principal = principal_of(services, request)
    rid = _id(groups)

    def off():
        _require(principal, RECIPIENT_ROLES, "deactivate recipients")
        return _recipients(services).deactivate(rid)

    r = _guarded(services, "governance.recipient.deactivate", principal, str(rid), off)
    _audit(services, "governance.recipient.deactivate", principal, "success", str(rid))
    return r.to_dict()


# -- proposals, decisions, undertakings ----------------------------------------------------
def _proposal_levels(services, case_ids) -> dict[str, str]:
    """The levels of the cases a proposal names: each must be a released case now."""
    catalogue = _catalogue(services)
    levels = {}
    for case_id in case_ids:
        try:
            case = catalogue.get(case_id) if isinstance(case_id, str) else None
        except ArchiveError:
            case = None
        if case is None or case.status != "available":
            raise HttpError(404, f"case {case_id} is not an available (released) case.",
                            "propose released cases only; see `archive cases search`.")  # fmt: skip
        levels[case_id] = case.level
    return levels


def _no_named_voters(body: dict) -> None:
    """People act for themselves: a body naming other voters is refused, never counted."""
    for key in ("approvers", "approver", "voters", "members", "recorded_by", "proposer"):
        if key in body:
            raise HttpError(
                400,
                f'"{key}" is not accepted: each Board member votes in their own session, '
                "and the archive records who is signed in.",
                "leave it out; every other member casts their own vote "
                "(POST /teaching/shares/N/vote, the web form, or `archive shares vote N`).",
            )


def _propose(services, request, **_):
    principal = principal_of(services, request)
    body = request_json(request)

    def make():
        _require(principal, BOARD_ROLES, "propose shares")
        _no_named_voters(body)
        cases = body.get("cases")
        if not isinstance(cases, list) or not cases:
            raise HttpError(400, 'give "cases": a list of case ids.')
        recipient = body.get("recipient_id")
        if isinstance(recipient, bool) or not isinstance(recipient, int):
            raise HttpError(400, 'give "recipient_id": the recipient\'s number.')
        levels = _proposal_levels(services, cases)
        check_face_holds(services, _catalogue(services), levels, "share")
        return _shares(services).propose(
            cases, recipient, body.get("purpose", ""), BoardVote.of_principal(principal),
            case_levels=levels, now=_now(),
        )  # fmt: skip

    made = _guarded(services, "governance.share.propose", principal, None, make)
    _audit(
        services, "governance.share.propose", principal, "success", made.reference,
        recipient_id=made.recipient_id, purpose=made.purpose, cases=len(made.case_ids),
    )  # fmt: skip
    return proposal_view(_shares(services), made.id)


def _list(services, request, **_):
    principal_of(services, request)
    shares = _shares(services)
    return {"proposals": [proposal_view(shares, p.id) for p in shares.list()]}


def _show(services, request, groups, **_):
    principal_of(services, request)
    return proposal_view(_shares(services), _id(groups))


def _decide(services, request, groups, **_):
    principal = principal_of(services, request)
    body = request_json(request)
    pid = _id(groups)
    target = f"SHARE-{pid:06d}"

    def decide():
        _require(principal, BOARD_ROLES, "record Board decisions")
        _no_named_voters(body)
        approved = body.get("approved", True)
        if not isinstance(approved, bool):
            raise HttpError(400, '"approved" is true or false.')
        return _shares(services).decide(
            pid,
            meeting_date=_day(body.get("meeting_date"), "meeting_date"),
            minute_reference=body.get("minute_reference", ""),
            decision_text=body.get("decision_text", ""),
            approved=approved,
            by=BoardVote.of_principal(principal),
            now=_now(),
        )

    decision = _guarded(services, "governance.share.decide", principal, target, decide)
    _audit(
        services, "governance.share.decide", principal, "success", target,
        decision=decision.outcome, decision_id=decision.id, counted=decision.quorum_counted,
        in_force=decision.in_force,
    )  # fmt: skip
    _audit(
        services, "governance.board.vote", principal, "success", f"decision {decision.id}",
        proposal=target, counted=decision.quorum_counted,
    )  # fmt: skip
    return decision.to_dict()


def _vote(services, request, groups, **_):
    """A Board member's own vote on the decision recorded for a share proposal."""
    principal = principal_of(services, request)
    body = request_json(request)
    pid = _id(groups)
    target = f"SHARE-{pid:06d}"

    def vote():
        _require(principal, BOARD_ROLES, "vote on Board decisions")
        _no_named_voters(body)
        return _shares(services).vote(pid, by=BoardVote.of_principal(principal), now=_now())

    decision = _guarded(services, "governance.board.vote", principal, target, vote)
    _audit(
        services, "governance.board.vote", principal, "success", f"decision {decision.id}",
        proposal=target, counted=decision.quorum_counted, in_force=decision.in_force,
    )  # fmt: skip
    return decision.to_dict()


def _undertaking_text(services, request, groups, **_):
    principal_of(services, request)
    return {"text": _shares(services).render_undertaking(_id(groups))}


def _undertaking_record(services, request, groups, **_):
    principal = principal_of(services, request)
    body = request_json(request)
    pid = _id(groups)
    target = f"SHARE-{pid:06d}"

    def record():
        _require(principal, BOARD_ROLES | RECIPIENT_ROLES, "record signed undertakings")
        try:
            data = base64.b64decode(body.get("signed_base64") or "", validate=True)
        except (binascii.Error, ValueError):
            raise HttpError(400, '"signed_base64" must be the signed copy, base64.') from None
        shares = _shares(services)
        check_undertaking_organisation(shares, pid, str(body.get("organisation", "")))
        ref, digest = store_signed_undertaking(_vault(services), pid, data)
        return shares.record_signed_undertaking(
            pid, digest, body.get("signatory", ""), body.get("role", ""),
            body.get("organisation", ""), _day(body.get("signed_on"), "signed_on"), ref,
            recorded_by=principal.user, now=_now(),
        )  # fmt: skip

    u = _guarded(services, "governance.share.undertaking", principal, target, record)
    _audit(
        services, "governance.share.undertaking", principal, "success", target,
        undertaking_id=u.id, signed_on=u.signed_on.isoformat(),
    )  # fmt: skip
    return proposal_view(_shares(services), pid)


# -- the register ------------------------------------------------------------------------
def _log(services, request, **_):
    principal = principal_of(services, request)
    entries = _shares(services).share_log()
    _audit(services, "governance.share.log", principal, "success", entries=len(entries))
    return {"shares": entries}


def _revoke(services, request, groups, **_):
    principal = principal_of(services, request)
    body = request_json(request)
    sid = _id(groups)

    def revoke():
        _require(principal, BOARD_ROLES | RECIPIENT_ROLES, "record revocation requests")
        return _shares(services).request_removal(
            sid, body.get("kind", "revocation"), body.get("reason", ""), principal.user,
            now=_now(),
        )  # fmt: skip

    rid = _guarded(services, "governance.share.revoke", principal, str(sid), revoke)
    _audit(services, "governance.share.revoke", principal, "success", str(sid), request_id=rid)
    return {"request_id": rid, "share_id": sid}


def _confirm(services, request, groups, **_):
    principal = principal_of(services, request)
    body = request_json(request)
    rid = _id(groups)

    def confirm():
        _require(principal, BOARD_ROLES | RECIPIENT_ROLES, "record confirmations")
        return _shares(services).record_confirmation(
            rid, body.get("confirmed_by", ""), _day(body.get("confirmed_on"), "confirmed_on"),
            body.get("evidence_ref", ""), now=_now(),
        )  # fmt: skip

    cid = _guarded(services, "governance.share.confirm", principal, str(rid), confirm)
    _audit(services, "governance.share.confirm", principal, "success", str(rid),
           confirmation_id=cid)  # fmt: skip
    return {"confirmation_id": cid, "request_id": rid}


# -- execution ---------------------------------------------------------------------------
def _case_levels_and_studies(services, case_ids) -> tuple[dict[str, str], dict[str, str]]:
    """Levels and Orthanc study ids of released cases; anything else is refused."""
    catalogue = _catalogue(services)
    levels, studies = {}, {}
    for case_id in case_ids:
        try:
            case = catalogue.get(case_id)
        except ArchiveError:
            case = None
        if case is None or case.status != "available":
            raise HttpError(404, f"case {case_id} is not an available (released) case.")
        levels[case_id] = case.level
        studies[case_id] = case.orthanc_study_id
    return levels, studies


def _collect(services, studies: dict[str, str]) -> list[tuple[str, LedgerEntry, str, bytes]]:
    """(case_id, ledger entry, SOP instance UID, stored DICOM bytes), from the vault."""
    out = []
    for case_id, study in studies.items():
        for entry, data in study_files(services, study):
            out.append((case_id, entry, entry.sop_uid, data))
    return out


def _registered_node(services, name: str, node: DicomNode):
    """The access room's DICOM node for the recipient, which must be exactly the one the
    recipients register records (fail closed); the share is sent to it."""
    known = {n.name: n for n in services.access_store().list_dicom_nodes()}
    entry = known.get(name)
    if (
        entry is None
        or entry.aet != node.aet
        or str(entry.host) != str(node.host)
        or int(entry.port) != int(node.port)
    ):
        raise HttpError(
            409,
            f"the archive's DICOM node register does not hold {name} as {node}; register "
            "the recipient's node again (personnel) before executing the share.",
        )
    return entry


def _execute(services, request, groups) -> tuple[dict, bytes | None]:
    principal = principal_of(services, request)
    body = request_json(request)
    pid = _id(groups)
    target = f"SHARE-{pid:06d}"
    action = "governance.share.execute"
    method = body.get("method", "cstore")

    def authorise():
        _require(principal, EXECUTE_ROLES, "execute shares")
        if method not in ("cstore", "package"):
            raise HttpError(400, '"method" is "cstore" or "package".')
        shares = _shares(services)
        proposal = shares.get(pid)
        levels, studies = _case_levels_and_studies(services, proposal.case_ids)
        check_face_holds(services, _catalogue(services), levels, "share")
        ticket = shares.authorise_share(pid, levels, now=_now())
        if method not in ticket.methods:
            what = "DICOM node" if method == "cstore" else "public key"
            raise HttpError(400, f"{ticket.recipient.organisation} has no {what} on record.")
        node = None
        if method == "cstore":
            assert ticket.recipient.dicom_node is not None
            name = recipient_node_name(ticket.recipient.id)
            node = _registered_node(services, name, ticket.recipient.dicom_node)
        return shares, ticket, studies, node

    shares, ticket, studies, node = _guarded(services, action, principal, target, authorise)
    files = _collect(services, studies)
    entries = [(c, sop, hashlib.sha256(d).hexdigest()) for c, _, sop, d in files]
    package = None
    if method == "cstore":
        name = recipient_node_name(ticket.recipient.id)
        try:
            answer = send_to_node(services, [e for _, e, _, _ in files], node)
        except Exception:  # noqa: BLE001 - the recipient refused or is down
            _audit(services, action, principal, "failure", target, destination=name)
            raise HttpError(
                502, f"the recipient's node {ticket.recipient.dicom_node} did not accept the "
                "share; is it listening? Nothing was entered in the register.",
            ) from None  # fmt: skip
        failed = answer.failed
        if failed:
            _audit(services, action, principal, "failure", target, failed=failed)
            raise HttpError(
                502, f"the recipient refused {failed} of {len(files)} instance(s); the share "
                "is not registered as complete. Ask the recipient to delete the partial copy.",
            )  # fmt: skip
    else:
        try:
            manifest = share_package_manifest(shares, ticket, entries, now=_now())
            package = build_package(
                [(c, sop, d) for c, _, sop, d in files],
                manifest,
                ticket.decision.decision_text,
                recipient=ticket.recipient.public_key,
            )
        except ArchiveError as exc:
            _audit(services, action, principal, "denied", target, reason=type(exc).__name__)
            raise
    sid = shares.record_share_execution(pid, entries, method, _now(), executed_by=principal.user)
    entry = next(e for e in shares.share_log() if e["share_id"] == sid)
    _audit(
        services, action, principal, "success", target,
        share_id=sid, method=method, instances=len(files), recipient_id=ticket.recipient.id,
        decision_id=ticket.decision.id, undertaking_id=ticket.undertaking.id,
    )  # fmt: skip
    result = {
        "share_id": sid,
        "method": method,
        "destination": entry["destination"],
        "instances": len(files),
        "manifest_sha256": entry["manifest_sha256"],
        "register": entry,
    }
    return result, package


def _execute_callback(services):
    def callback(output, uri, **request) -> None:
        if request.get("method") != "POST":
            output.SendMethodNotAllowed("POST")
            return
        try:
            result, package = _execute(services, request, request.get("groups") or [])
            if package is None:
                answer_json(output, result)
            else:
                ref = f"SHARE-{result['share_id']:06d}"
                output.SetHttpHeader("Content-Disposition", f'attachment; filename="{ref}.tar.age"')
                output.AnswerBuffer(package, "application/octet-stream")
        except HttpError as exc:
            answer_json(output, {"error": exc.message}, exc.status)
        except ArchiveError as exc:
            answer_json(output, {"error": str(exc)}, 400)
        except Exception as exc:  # noqa: BLE001
            orthanc.LogError(f"teaching-archive: share execute: {type(exc).__name__}")
            answer_json(output, {"error": "internal error; see the archive's log"}, 500)

    orthanc.RegisterRestCallback("/teaching/shares/([0-9]+)/execute", callback)


def _log_csv_callback(services):
    def callback(output, uri, **request) -> None:
        if request.get("method") != "GET":
            output.SendMethodNotAllowed("GET")
            return
        try:
            principal = principal_of(services, request)
            entries = _shares(services).share_log()
            _audit(services, "governance.share.log", principal, "success", entries=len(entries))
            output.AnswerBuffer(share_log_csv(entries), "text/csv")
        except HttpError as exc:
            answer_json(output, {"error": exc.message}, exc.status)
        except Exception as exc:  # noqa: BLE001
            orthanc.LogError(f"teaching-archive: share log: {type(exc).__name__}")
            answer_json(output, {"error": "internal error; see the archive's log"}, 500)

    orthanc.RegisterRestCallback("/teaching/shares/log.csv", callback)


def register(services) -> None:
    _policy(services)  # a broken governance policy stops Orthanc: fail closed
    _shares(services)

    def bind(fn):
        return lambda **kw: fn(services, **kw)

    route(services, "/teaching/recipients", {"GET": bind(_recipient_list),
                                             "POST": bind(_recipient_add)})  # fmt: skip
    route(services, "/teaching/recipients/([0-9]+)", {"GET": bind(_recipient_show)})
    route(services, "/teaching/recipients/([0-9]+)/agreement",
          {"POST": bind(_recipient_agreement)})  # fmt: skip
    route(services, "/teaching/recipients/([0-9]+)/deactivate",
          {"POST": bind(_recipient_deactivate)})  # fmt: skip
    route(services, "/teaching/shares", {"GET": bind(_list), "POST": bind(_propose)})
    route(services, "/teaching/shares/log", {"GET": bind(_log)})
    _log_csv_callback(services)
    route(services, "/teaching/shares/([0-9]+)", {"GET": bind(_show)})
    route(services, "/teaching/shares/([0-9]+)/decide", {"POST": bind(_decide)})
    route(services, "/teaching/shares/([0-9]+)/vote", {"POST": bind(_vote)})
    route(services, "/teaching/shares/([0-9]+)/undertaking",
          {"GET": bind(_undertaking_text), "POST": bind(_undertaking_record)})  # fmt: skip
    route(services, "/teaching/shares/log/([0-9]+)/revoke", {"POST": bind(_revoke)})
    route(services, "/teaching/shares/requests/([0-9]+)/confirm", {"POST": bind(_confirm)})
    _execute_callback(services)

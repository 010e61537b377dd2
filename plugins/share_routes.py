"""/teaching/shares: proposals, the Board's decisions and votes, signed undertakings.

Decode, call a use case of archive.governance.sharing.usecases as the authenticated
person, encode (plugins/governance_http.py). Board members propose and vote, each in
their own session; a body naming other voters is refused. The register and execution
are in plugins/share_register_routes.py, recipients in plugins/recipient_routes.py.
"""

from __future__ import annotations

import base64
import binascii

from archive.governance.sharing import usecases as uc
from archive.governance.sharing.records import Shares, proposal_view
from plugins import governance_http as gh
from plugins.rest import HttpError


def _shares(services) -> Shares:
    return Shares(services.db(), gh.governance_policy(services))


def _vault(services):
    def make():
        from archive.governance.sharing.delivery import undertakings_dir
        from archive.vault.store import EncryptedStore

        return EncryptedStore(undertakings_dir(services.home.data_dir), services.runtime.keyring)

    return gh.cached(f"undertakings:{services.home.data_dir}", make)


def _propose(services, request, groups):
    body = gh.body(request)
    made = gh.encode(uc.propose(
        gh.ports(services), gh.who(services, request), body.get("cases") or [],
        body.get("recipient_id"), body.get("purpose", ""), fields=body,
    ))  # fmt: skip
    return proposal_view(_shares(services), made.id)


def _list(services, request, groups):
    gh.who(services, request)
    shares = _shares(services)
    return {"proposals": [proposal_view(shares, p.id) for p in shares.list()]}


def _show(services, request, groups):
    gh.who(services, request)
    return proposal_view(_shares(services), gh.number(groups))


def _decide(services, request, groups):
    body = gh.body(request)
    voted = gh.encode(uc.decide(
        gh.ports(services), gh.who(services, request), gh.number(groups),
        meeting_date=gh.day(body.get("meeting_date"), "meeting_date"),
        minute_reference=body.get("minute_reference", ""),
        decision_text=body.get("decision_text", ""),
        approved=body.get("approved", True), fields=body,
    ))  # fmt: skip
    return voted.decision.to_dict()


def _vote(services, request, groups):
    body = gh.body(request)
    voted = gh.encode(
        uc.vote(gh.ports(services), gh.who(services, request), gh.number(groups), fields=body)
    )
    return voted.decision.to_dict()


def _undertaking_text(services, request, groups):
    gh.who(services, request)
    return {"text": _shares(services).render_undertaking(gh.number(groups))}


def _undertaking_record(services, request, groups):
    body = gh.body(request)
    principal = gh.who(services, request)
    try:
        data = base64.b64decode(body.get("signed_base64") or "", validate=True)
    except (binascii.Error, ValueError):
        raise HttpError(400, '"signed_base64" must be the signed copy, base64.') from None
    return dict(gh.encode(uc.undertaking(
        gh.ports(services), principal, gh.number(groups), data,
        signatory=body.get("signatory", ""), role=body.get("role", ""),
        organisation=str(body.get("organisation", "")),
        signed_on=gh.day(body.get("signed_on"), "signed_on"), vault=_vault(services),
    )))  # fmt: skip


def register(orthanc, services) -> None:
    gh.governance_policy(services)  # a broken governance policy stops Orthanc: fail closed
    _shares(services)
    gh.routes(orthanc, services, {
        "/teaching/shares": {"GET": _list, "POST": _propose},
        "/teaching/shares/([0-9]+)": {"GET": _show},
        "/teaching/shares/([0-9]+)/decide": {"POST": _decide},
        "/teaching/shares/([0-9]+)/vote": {"POST": _vote},
        "/teaching/shares/([0-9]+)/undertaking": {"GET": _undertaking_text,
                                                  "POST": _undertaking_record},
    })  # fmt: skip

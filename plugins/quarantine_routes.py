"""Quarantine review routes: the only way a held instance reaches Orthanc.

POST /teaching/quarantine/{id}/release (personnel; the CLI calls it with a short-lived
token of the named reviewer). The route re-checks everything (reviewer other than the
ingester, photograph consent, OCR clean after masking), mints a one-time ticket for
exactly the reviewed bytes and posts them to Orthanc from inside the plugin; the
received-instance callback stores them unchanged only with that ticket, so the
de-identified UIDs stay as they are. No route serves held bytes or previews: review
happens on the home with `archive quarantine show`.
"""

from __future__ import annotations

import json

import orthanc

from archive.audit import AuditEvent
from archive.errors import ArchiveError
from archive.ingest import flags as ingest_flags
from archive.ingest import tickets
from archive.pixels import PHOTOGRAPH_FLAG, load_masking_policy
from archive.quarantine.review import check_release
from plugins.ingest import ticket_key
from plugins.rest import HttpError, principal_of, request_json, route


def register(services) -> None:
    load_masking_policy(services.config.policies_dir)  # a broken policy stops the start

    def release_route(uri, request, groups, **_):
        principal = principal_of(services, request)
        note = str(request_json(request).get("note", ""))[:500]
        return release(services, principal, groups[0], note)

    route(services, "/teaching/quarantine/([^/]+)/release", {"POST": release_route})


def release(services, principal, item_id: str, note: str = "") -> dict:
    """Release held item `item_id` as the signed-in `principal` (REST and the web), after
    every check again; audited once either way."""
    if "personnel" not in principal.roles:
        raise HttpError(403, "Only personnel review the quarantine.")
    masking = load_masking_policy(services.config.policies_dir)
    key = ticket_key(services)
    reviewer = principal.user
    store = services.quarantine()
    try:
        item, data = check_release(store, masking, item_id, reviewer)
    except ArchiveError as exc:
        services.record(
            AuditEvent(
                action="quarantine.release",
                outcome="denied",
                actor=reviewer,
                source="http",
                target=item_id,
                detail={"reason": str(exc)[:300]},
            )
        )
        raise HttpError(409, str(exc)) from None
    nonce = tickets.mint(
        services.db(),
        key,
        item_id=item_id,
        sop_uid=item.sop_uid or "",
        data=data,
        reviewer=reviewer,
    )
    answer = json.loads(orthanc.RestApiPost("/instances", data))
    if not tickets.was_redeemed(services.db(), nonce):
        raise HttpError(500, "The reviewed instance was not stored as reviewed; it stays held.")
    flags = list(item.flags)
    if PHOTOGRAPH_FLAG in flags:
        flags.append(f"photograph-consent:{store.consent_for(item.study_uid or '')}")
    ingest_flags.record_flags(services.db(), item.study_uid or "", item.series_uid or "", flags)
    decided = store.decide(item_id, "released", reviewer, note)
    services.record(
        AuditEvent(
            action="quarantine.release",
            outcome="success",
            actor=reviewer,
            source="http",
            target=item_id,
            detail={
                "study": item.study_uid or "",
                "sop": item.sop_uid or "",
                "orthanc_id": answer.get("ID", ""),
                "ingested_by": item.ingested_by,
                "masked_by": item.masked_by or "",
                "ticket": nonce,
            },
        )
    )
    return {"item": decided.as_dict(), "orthanc_id": answer.get("ID")}

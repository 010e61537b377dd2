"""Quarantine review routes: the only way a held instance reaches Orthanc.

POST /teaching/quarantine/{id}/release  {"note"?}: release as yourself (the CLI calls it
with the reviewer's own credentials). It decodes, calls
archive.quarantine.usecases.release_item (which authorises quarantine.review, never for
whoever ingested the study, and re-checks consent and OCR) and encodes its answer; a
refusal is `{"error", "next"}` with its status. The use case mints a one-time ticket for
exactly the reviewed bytes, which are posted to Orthanc from inside the plugin; the
received-instance callback stores them unchanged only with that ticket, so the
de-identified UIDs stay as they are. No route serves held bytes or previews: review
happens on the home with `archive quarantine show`.
"""

from __future__ import annotations

import json

from archive.core import Ports
from archive.ingest import flags as ingest_flags
from archive.ingest import tickets
from archive.pixels import load_masking_policy
from archive.quarantine import usecases as uq
from plugins.rest import outcome, principal_of, request_json, route


def register(orthanc, services) -> None:
    load_masking_policy(services.config.policies_dir)  # a broken policy stops the start

    def release(uri, request, groups, **_):
        principal = principal_of(services, request)
        note = str(request_json(request).get("note", ""))[:500]
        done = release_for(orthanc, services, principal, groups[0], note, source="rest")
        return {"item": done.item.as_dict(), "orthanc_id": done.orthanc_id}

    route(services, "/teaching/quarantine/([^/]+)/release", {"POST": release})


def release_for(orthanc, services, principal, item_id: str, note: str, *, source: str):
    """Release held item `item_id` as the authenticated `principal` (REST and the web):
    archive.quarantine.usecases.release_item with this plugin's ports; a refusal is raised
    as HttpError with its reason and next step."""
    masking = load_masking_policy(services.config.policies_dir)
    key = tickets.derive_ticket_key(services.runtime.keyring.pseudonym_key)
    db = services.db()
    ports = Ports(db=db, audit=services.runtime.audit,
                  policies_dir=services.config.policies_dir, source=source)  # fmt: skip
    room = uq.QuarantineRoom(ports, services.quarantine(), masking)

    def mint(item, data, reviewer):
        return tickets.mint(db, key, item_id=item.id, sop_uid=item.sop_uid or "",
                            data=data, reviewer=reviewer)  # fmt: skip

    def store_instance(data: bytes) -> dict:
        # The one RestApi call of the archive's routes, allowed and tested in
        # ops/NO-RESTAPI.md: storing a reviewed instance needs Orthanc itself.
        return json.loads(orthanc.RestApiPost("/instances", data))

    def record_flags(item, flags) -> None:
        ingest_flags.record_flags(db, item.study_uid or "", item.series_uid or "", flags)

    return outcome(uq.release_item(
        room, principal, item_id, note, mint=mint, store_instance=store_instance,
        redeemed=lambda nonce: tickets.was_redeemed(db, nonce), record_flags=record_flags,
    ))  # fmt: skip

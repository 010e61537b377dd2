"""The web interface's Backend in Orthanc (plugins/web.py): what the web app needs of
the running archive - the database, the audit log, the policies, the vault's ledger - and
the few acts that go through the same functions as the /teaching REST routes (pulls,
removal decisions and exports, quarantine release, thumbnails), so the web and the API
cannot drift apart.
"""

from __future__ import annotations

from functools import cached_property

from archive.web import WebError
from plugins.rest import HttpError


class OrthancBackend:
    def __init__(self, services, orthanc=None) -> None:
        self.services = services
        self.home = services.home
        self.orthanc = orthanc  # for the one call that must store into Orthanc (release)

    @property
    def route_policy(self):
        return self.services.route_policy

    @property
    def policies_dir(self):
        return self.services.config.policies_dir

    @cached_property
    def governance_policy(self):
        from plugins.governance_http import governance_policy

        return governance_policy(self.services)

    @property
    def volume_kind(self):
        return self.services.config.volume.kind

    def db(self):
        return self.services.db()

    def access_store(self):
        return self.services.access_store()

    def record(self, event) -> int:
        return self.services.record(event)

    def quarantine(self):
        return self.services.quarantine()

    def catalogue(self, principal):
        """The catalogue for reading alongside another act (e.g. cases of a removal)."""
        return self.catalogue_room().catalogue()

    def catalogue_room(self):
        """The catalogue's use cases, audited as acts from the web."""
        from plugins.rooms import catalogue_room

        return catalogue_room(self.services, source="web")

    def pull_room(self):
        """The pull use cases, audited as acts from the web."""
        from plugins.pulls_routes import pull_room

        return pull_room(self.services, source="web")

    def thumbnail(self, principal, case_id, number, size=None):
        from archive.render import THUMBNAIL_SIZE
        from plugins.thumbnail_routes import thumbnail_png

        try:
            return thumbnail_png(self.services, principal, case_id, number, source="web",
                                 size=size or THUMBNAIL_SIZE)  # fmt: skip
        except HttpError as exc:
            raise WebError(exc.status, f"{exc.message} {exc.next}".strip()) from None

    # -- the viewer (issue 22): DICOMweb from the vault, never orthanc.RestApi* ----------
    def ledger(self):
        return self.services.ledger()

    def read_dicom(self, entry) -> bytes:
        from plugins.vault_files import read_entry

        return read_entry(self.services, entry)

    # -- issue 22: the web for every role ----------------------------------------------
    def _refused(self, exc: HttpError) -> WebError:
        return WebError(exc.status, f"{exc.message} {exc.next or ''}".strip())

    def release_quarantine(self, principal, item_id, note):
        from plugins.quarantine_routes import release_for

        try:
            return release_for(self.orthanc, self.services, principal, item_id, note,
                               source="web")  # fmt: skip
        except HttpError as exc:
            raise self._refused(exc) from None

    def export_removal(self, principal, rid, body):
        """(package, reference): one download spent as on GET /teaching/removals/N/download."""
        from plugins.removal_export_routes import export_package

        try:
            package, _mime, headers = export_package(self.services, principal, rid, body)
        except HttpError as exc:
            raise self._refused(exc) from None
        reference = headers["Content-Disposition"].split('filename="', 1)[1].split(".tar")[0]
        return package, reference

    def undertaking_store(self):
        from plugins.share_routes import _vault

        return _vault(self.services)

    def workstations(self) -> list[str]:
        from archive.access.nodes import workstations

        return sorted(workstations(self.db()).all())

    def archive_totals(self) -> tuple[int, int]:
        """Instances and bytes stored, from the vault's ledger (never orthanc.RestApi*,
        ops/NO-RESTAPI.md)."""
        ledger = self.services.ledger()
        return ledger.counts()["instances"], ledger.total_size()

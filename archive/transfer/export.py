"""The sender's side: gather the archive's teaching work and write the package.

Reads the catalogue (cases, teaching metadata, collections), the quarantine's review
outcomes and consent records, and the vault (each instance exactly as stored, through
the instance ledger), and hands them to `write_package`. Plain Python: the CLI gives it
an open database, keyring and the receiving collection's age recipient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from archive.catalogue import Catalogue
from archive.catalogue.inventory import holdings
from archive.catalogue.model import EDITABLE_FIELDS
from archive.quarantine.store import consent_level, released_reviews
from archive.vault.ledger import InstanceLedger, read_dicom

TRANSFERRED_STATUSES = ("available", "quarantined")


def _reviews(conn: Any) -> dict[str, dict]:
    """Review outcome of every instance a person released or masked from quarantine."""
    return released_reviews(conn)


def _consent(conn: Any, study_uid: str) -> str:
    return consent_level(conn, study_uid)


def gather(conn: Any, catalogue: Catalogue) -> tuple[list[dict], list[dict]]:
    """(manifest cases without instances, collections), in case-id order."""
    cases = []
    for held in holdings(conn, TRANSFERRED_STATUSES):
        case = catalogue.get(held.case_id)
        cases.append(
            {
                "case_id": case.case_id,
                "study_uid": case.study_uid,
                "orthanc_study_id": case.orthanc_study_id,
                "status": case.status,
                "level": case.level,
                "metadata": {f: getattr(case, f) for f in EDITABLE_FIELDS},
                "consent": {"level": _consent(conn, case.study_uid), "opt_out_checked": True},
            }
        )
    sent = {c["case_id"] for c in cases}
    collections = [
        {
            "collection_id": col.collection_id,
            "title": col.title,
            "description": col.description,
            "owner": col.owner,
            "case_ids": [i.case_id for i in col.items if i.case_id in sent],
        }
        for col in (catalogue.get_collection(c.collection_id) for c in catalogue.list_collections())
    ]
    return cases, collections


def instance_reader(conn: Any, store: Any) -> Callable[[dict], Iterator[tuple[dict, bytes]]]:
    """For each manifest case, its stored instances (fields, bytes) from the vault."""
    ledger = InstanceLedger(conn)
    reviews = _reviews(conn)

    def read(case: dict) -> Iterator[tuple[dict, bytes]]:
        for entry in ledger.study_files(case.pop("orthanc_study_id")):
            data = read_dicom(store, entry)
            yield (
                {
                    "sop_instance_uid": entry.sop_uid,
                    "series_uid": entry.series_uid,
                    "review": reviews.get(entry.sop_uid),
                },
                data,
            )

    return read

"""Stable study -> teaching case: the one OnChange callback of the archive.

orthanc-python 4.0 has a single change callback for every change type; this adapter owns
it and acts on STABLE_STUDY (and, at ORTHANC_STARTED, catalogues studies that became
stable while the plugin was not listening). It reads only Orthanc's de-identified data
through RestApiGet (allowed inside OnChange; `orthanc` is the module the bootstrap
hands in, services.orthanc), builds a StudySummary with
archive.catalogue.from_orthanc and upserts the case; the catalogue audits
catalogue.case.create / catalogue.case.refresh before it commits. Nothing raises out of
the callback: a failure is one log line and a failure audit event.
"""

from __future__ import annotations

import json
import threading

from archive.audit import AuditEvent
from archive.catalogue import Catalogue, load_vocabulary, repository_for
from archive.catalogue.auditing import audit_sink
from archive.catalogue.changes import ChangeSink
from archive.catalogue.from_orthanc import AgeBands, SeriesFacts, study_summary
from archive.errors import ArchiveError
from archive.ingest import origins

_local = threading.local()
_vocabularies: dict[str, object] = {}  # policies dir -> Vocabulary, read once


def catalogue_for(services, on_change: ChangeSink | None = None) -> Catalogue:
    """A Catalogue on this thread's connection (schema checked once per thread)."""
    repo = getattr(_local, "repo", None)
    if repo is None or getattr(_local, "conn", None) is not services.db():
        repo = repository_for(services.db())
        _local.repo, _local.conn = repo, services.db()
    policies = str(services.config.policies_dir)
    vocabulary = _vocabularies.get(policies)
    if vocabulary is None:
        vocabulary = _vocabularies.setdefault(policies, load_vocabulary(policies))
    return Catalogue(
        services.db(),
        services.config.school_prefix,
        vocabulary=vocabulary,
        on_change=on_change,
        repository=repo,
    )


def _get(orthanc, uri: str):
    return json.loads(orthanc.RestApiGet(uri))


def sync_study(services, orthanc_study_id: str):
    """Create or refresh the case of one Orthanc study; returns the Case."""
    orthanc = services.orthanc
    study = _get(orthanc, f"/studies/{orthanc_study_id}")
    uid = str((study.get("MainDicomTags") or {}).get("StudyInstanceUID", ""))
    by_front = origins.intake_of(services.db(), uid) == "dicom"  # C-STOREd to the front
    facts = []
    for series_id in study.get("Series") or []:
        series = _get(orthanc, f"/series/{series_id}")
        instances = series.get("Instances") or []
        if not instances:
            continue
        sample = instances[0]
        tags = _get(orthanc, f"/instances/{sample}/simplified-tags")
        metadata = _get(orthanc, f"/instances/{sample}/metadata?expand")
        origin = "DicomProtocol" if by_front else metadata.get("Origin", "")
        origin_only = {"Origin": origin}  # never the sender's identity
        facts.append(SeriesFacts(series, tags, origin_only))
    policy = services.deid_policy
    bands = AgeBands(policy.adult_years, policy.band_years, policy.cap_years)
    summary, deidentified = study_summary(study, facts, policy.level, bands)
    sink = audit_sink(services.runtime.audit, (), source="orthanc")
    return catalogue_for(services, sink).upsert_from_study(
        summary,
        orthanc_study_id,
        status="available" if deidentified else "quarantined",
    )


def _failed(services, orthanc_study_id: str, exc: BaseException) -> None:
    reason = str(exc) if isinstance(exc, ArchiveError) else type(exc).__name__
    orthanc = services.orthanc
    orthanc.LogError(f"teaching-archive: study not catalogued: {reason}")
    try:
        services.record(
            AuditEvent(
                action="catalogue.case.sync",
                outcome="failure",
                actor="system",
                source="orthanc",
                target=orthanc_study_id,
                detail={"error": type(exc).__name__},
            )
        )
    except Exception as audit_exc:  # noqa: BLE001 - the callback must not raise
        orthanc.LogError(f"teaching-archive: audit failed too: {type(audit_exc).__name__}")


def _catch_up(services) -> None:
    """Catalogue stable studies that have no case yet (plugin added or was down)."""
    catalogue = catalogue_for(services)
    for study in _get(services.orthanc, "/studies?expand"):
        uid = (study.get("MainDicomTags") or {}).get("StudyInstanceUID", "")
        if study.get("IsStable") and catalogue.case_for_study(uid) is None:
            try:
                sync_study(services, study["ID"])
            except Exception as exc:  # noqa: BLE001
                _failed(services, study.get("ID", ""), exc)


def register(orthanc, services) -> None:
    catalogue_for(services)  # vocabulary and tables now: a broken policy stops Orthanc
    _ = services.deid_policy

    def on_change(change_type, level, resource_id) -> None:
        for hook in services.change_hooks:
            try:
                hook(change_type, level, resource_id)
            except Exception as exc:  # noqa: BLE001 - never raise into Orthanc
                orthanc.LogError(f"teaching-archive: change hook failed: {type(exc).__name__}")
        try:
            if change_type == orthanc.ChangeType.STABLE_STUDY:
                sync_study(services, resource_id)
            elif change_type == orthanc.ChangeType.ORTHANC_STARTED:
                _catch_up(services)
        except Exception as exc:  # noqa: BLE001 - never raise into Orthanc
            _failed(services, resource_id or "", exc)

    orthanc.RegisterOnChangeCallback(on_change)

"""Turn what Orthanc reports about a stable, de-identified study into a StudySummary.

The Orthanc adapter fetches JSON (the study, each series, one instance's tags and
metadata per series) and hands it here, so the rules are plain Python and tested without
Orthanc. Only de-identified facts are read; the sender's identity (RemoteAET, RemoteIP,
CalledAET) is never looked at: the intake is reduced to its kind, "dicom" or "rest".
A study whose instances do not all say PatientIdentityRemoved=YES with a
DeidentificationMethod is catalogued "quarantined", never "available" (fail closed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from archive.catalogue.model import SeriesSummary, StudySummary

# Orthanc's instance metadata "Origin" -> the catalogue's intake kind. The watch folder
# uploads through REST, so it arrives as RestApi; anything Orthanc did not get from a
# DICOM peer came through the archive's own HTTP side.
_ORIGINS = {"DicomProtocol": "dicom", "RestApi": "rest"}
_AGE = re.compile(r"^(\d{1,3})([DWMY])$")


@dataclass(frozen=True)
class AgeBands:
    """How de-identification banded adult ages (policies/deid/options.toml [ages])."""

    adult_years: int = 18
    band_years: int = 5
    cap_years: int = 90


@dataclass(frozen=True)
class SeriesFacts:
    """One series as Orthanc holds it: /series/{id}, and tags + metadata of one instance."""

    series: Mapping[str, Any]
    tags: Mapping[str, Any]  # /instances/{id}/simplified-tags
    metadata: Mapping[str, Any] = field(default_factory=dict)  # /instances/{id}/metadata?expand


def age_band(value: str, bands: AgeBands = AgeBands()) -> str:
    """A banded DICOM age as people read it: 050Y -> 50-54, 090Y -> 90+, 007Y -> 7Y."""
    m = _AGE.match((value or "").strip().upper())
    if not m:
        return ""
    n, unit = int(m.group(1)), m.group(2)
    if unit != "Y" or n < bands.adult_years:
        return f"{n}{unit}"
    if n >= bands.cap_years:
        return f"{bands.cap_years}+"
    upper = min(n - n % bands.band_years + bands.band_years - 1, bands.cap_years - 1)
    return f"{n}-{upper}"


def intake_of(metadata: Sequence[Mapping[str, Any]]) -> str:
    """'dicom' if any sampled instance came by C-STORE, else 'rest'."""
    kinds = {_ORIGINS.get(str(m.get("Origin", "")), "rest") for m in metadata}
    return "dicom" if "dicom" in kinds else "rest"


def is_deidentified(tags: Mapping[str, Any]) -> bool:
    return str(tags.get("PatientIdentityRemoved", "")).strip().upper() == "YES" and bool(
        str(tags.get("DeidentificationMethod") or "").strip()
    )


def study_summary(
    study: Mapping[str, Any],
    series: Sequence[SeriesFacts],
    level: str,
    bands: AgeBands = AgeBands(),
) -> tuple[StudySummary, bool]:
    """(summary, de-identified?) from Orthanc's JSON; series in SeriesNumber order."""
    main = study.get("MainDicomTags") or {}
    patient = study.get("PatientMainDicomTags") or {}
    ordered = sorted(series, key=_series_key)
    summaries = [
        SeriesSummary(
            series_uid=str((s.series.get("MainDicomTags") or {}).get("SeriesInstanceUID", "")),
            modality=str((s.series.get("MainDicomTags") or {}).get("Modality", "")).strip(),
            description=str((s.series.get("MainDicomTags") or {}).get("SeriesDescription", "")),
            instance_count=len(s.series.get("Instances") or []),
            orthanc_series_id=str(s.series.get("ID", "")),
        )
        for s in ordered
    ]
    first = ordered[0].tags if ordered else {}
    body_part = next(
        (
            str(v)
            for s in ordered
            if (
                v := (s.series.get("MainDicomTags") or {}).get("BodyPartExamined")
                or s.tags.get("BodyPartExamined")
            )
        ),
        "",
    )
    summary = StudySummary(
        study_uid=str(main.get("StudyInstanceUID", "")),
        patient_pseudonym=str(patient.get("PatientID", "")),
        modalities=list(dict.fromkeys(x.modality.upper() for x in summaries if x.modality)),
        body_part=body_part,
        series_count=len(summaries),
        instance_count=sum(x.instance_count for x in summaries),
        age_band=age_band(str(first.get("PatientAge", "")), bands),
        sex=_sex(str(patient.get("PatientSex") or first.get("PatientSex") or "")),
        level=level,
        intake=intake_of([s.metadata for s in ordered]),
        study_description=str(main.get("StudyDescription", "")),
        series=summaries,
    )
    deidentified = bool(ordered) and all(is_deidentified(s.tags) for s in ordered)
    return summary, deidentified


def _sex(value: str) -> str:
    """M, F or O as DICOM codes them; anything else is recorded as not known."""
    value = value.strip().upper()
    return value if value in ("M", "F", "O") else ""


def _series_key(s: SeriesFacts) -> tuple[int, str]:
    number = str((s.series.get("MainDicomTags") or {}).get("SeriesNumber", "")).strip()
    return (int(number) if number.lstrip("-").isdigit() else 1 << 30, str(s.series.get("ID", "")))

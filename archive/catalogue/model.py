"""The catalogue's value types: what a stable study tells us, and what a case is.

Plain dataclasses so the Orthanc adapter, the CLI and the REST routes exchange the same
shapes; `to_dict` gives their JSON form. Nothing here can hold a source identity: the
study UID and the patient pseudonym are the de-identified ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

LEVELS = ("limited-access", "publication")
INTAKES = ("dicom", "rest", "watch-folder")
STATUSES = ("quarantined", "available", "withdrawn")
REVIEW_STATES = ("draft", "reviewed")
SORTS = ("relevance", "added", "-added", "title")

# Teaching metadata a trainer may edit. Text fields are scanned for identifiers on save.
TEXT_FIELDS = (
    "title",
    "clinical_history",
    "findings",
    "diagnosis",
    "differential",
    "discussion",
    "teaching_points",
    "anatomy",
    "references",
)
LIST_FIELDS = ("keywords", "authors")
CHOICE_FIELDS = ("category", "difficulty", "review_state")
EDITABLE_FIELDS = TEXT_FIELDS + LIST_FIELDS + CHOICE_FIELDS


@dataclass(frozen=True)
class SeriesSummary:
    """One de-identified series; `orthanc_series_id` lets a viewer ask for thumbnails."""

    series_uid: str
    modality: str
    description: str = ""
    instance_count: int = 0
    orthanc_series_id: str = ""


@dataclass(frozen=True)
class StudySummary:
    """What the intake side reports when Orthanc declares a de-identified study stable."""

    study_uid: str
    patient_pseudonym: str
    modalities: list[str]
    body_part: str
    series_count: int
    instance_count: int
    age_band: str
    sex: str
    level: str
    intake: str
    study_description: str = ""
    series: list[SeriesSummary] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    """A teaching case: the study's facts plus the trainers' teaching metadata."""

    case_id: str
    study_uid: str
    orthanc_study_id: str
    patient_pseudonym: str
    modalities: list[str]
    body_part: str
    series_count: int
    instance_count: int
    age_band: str
    sex: str
    level: str
    intake: str
    status: str
    added_at: str
    updated_at: str
    study_description: str = ""
    series: list[SeriesSummary] = field(default_factory=list)
    title: str = ""
    clinical_history: str = ""
    findings: str = ""
    diagnosis: str = ""
    differential: str = ""
    discussion: str = ""
    teaching_points: str = ""
    anatomy: str = ""
    references: str = ""
    keywords: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    category: str = ""
    difficulty: str = ""
    review_state: str = "draft"
    edited_by: str = ""
    edited_at: str = ""
    vocabulary_version: str = ""

    def to_dict(self, *, include_pseudonym: bool = False) -> dict[str, Any]:
        """JSON form; the key-coded pseudonym only for callers allowed to re-link."""
        data = asdict(self)
        if not include_pseudonym:
            data.pop("patient_pseudonym")
        return data


@dataclass(frozen=True)
class SearchFilters:
    """Each filter is a set of accepted values (any of them); filters combine with AND.

    An empty filter accepts everything, except that withdrawn cases are only returned
    when `status` names "withdrawn" explicitly.
    """

    modality: tuple[str, ...] = ()
    body_part: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    difficulty: tuple[str, ...] = ()
    level: tuple[str, ...] = ()
    collection: tuple[str, ...] = ()
    status: tuple[str, ...] = ()

    @classmethod
    def of(cls, **values: str | list[str] | tuple[str, ...] | None) -> SearchFilters:
        """Build from loose input (a single string, a list, or None per filter)."""
        normalised: dict[str, tuple[str, ...]] = {}
        for name, value in values.items():
            if name not in cls.__dataclass_fields__:
                raise TypeError(f"unknown search filter {name!r}")
            if value is None:
                continue
            items = (value,) if isinstance(value, str) else tuple(value)
            normalised[name] = tuple(v for v in (str(i).strip() for i in items) if v)
        return cls(**normalised)


@dataclass(frozen=True)
class SearchPage:
    total: int
    items: list[Case]
    page: int = 1
    per_page: int = 20
    # "all" when every query word matched; "partial" when no case had all of them and
    # the search dropped unknown, then the most common, words until some cases matched.
    matched: str = "all"

    def to_dict(self, *, include_pseudonym: bool = False) -> dict[str, Any]:
        return {
            "total": self.total,
            "page": self.page,
            "per_page": self.per_page,
            "matched": self.matched,
            "items": [c.to_dict(include_pseudonym=include_pseudonym) for c in self.items],
        }


@dataclass(frozen=True)
class CollectionItem:
    case_id: str
    position: int
    title: str
    status: str


@dataclass(frozen=True)
class Collection:
    """An ordered set of cases with its own title, e.g. an exam-preparation set."""

    collection_id: str
    title: str
    description: str
    owner: str
    created_at: str
    updated_at: str
    items: list[CollectionItem] = field(default_factory=list)
    size: int = 0
    editors: list[str] = field(default_factory=list)  # who the owner shares editing with

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

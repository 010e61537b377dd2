"""The teaching catalogue: stable studies become cases; trainers describe and group them.

Rules live here, SQL lives in repository.py. Case ids are `<PREFIX>-<YEAR>-<NNNNN>`:
the school prefix, the year the case was *catalogued* (not the study date) and a
per-year sequence number allocated in the same transaction as the insert, so the id
says nothing about the patient and two processes never hand out the same number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from archive.catalogue.changes import CatalogueChange, ChangeSink, ignore_changes
from archive.catalogue.errors import (
    CaseNotFoundError,
    CatalogueError,
    CollectionNotFoundError,
    IdentifierInTextError,
)
from archive.catalogue.model import (
    EDITABLE_FIELDS,
    INTAKES,
    LEVELS,
    LIST_FIELDS,
    REVIEW_STATES,
    SORTS,
    STATUSES,
    TEXT_FIELDS,
    Case,
    Collection,
    SearchFilters,
    SearchPage,
    SeriesSummary,
    StudySummary,
)
from archive.catalogue.query import parse_query
from archive.catalogue.repository import CatalogueRepository, repository_for
from archive.catalogue.vocabulary import Vocabulary, load_vocabulary
from archive.db.errors import IntegrityError

CASE_ID = re.compile(r"^[A-Z0-9]{2,8}-\d{4}-\d{5,}$")
_PREFIX = re.compile(r"^[A-Z0-9]{2,8}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_MODALITY = re.compile(r"^[A-Z0-9]{1,16}$")
_AGE_BAND = re.compile(r"^(\d{1,3}(-\d{1,3})?\+?[YMWD]?|unknown)?$")
_SEXES = {"M": "M", "F": "F", "O": "O", "": "", "MALE": "M", "FEMALE": "F", "OTHER": "O"}
_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PSEUDONYM = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_TEXT = 20_000
MAX_LIST_ITEMS = 50
_UPSERT_ATTEMPTS = 3  # see upsert_from_study
MAX_PER_PAGE = 200
# Catalogue sizes at which the planner's statistics are refreshed (then every 5,000).
STATISTICS_AT = frozenset({50, 500, 2000})

Scanner = Callable[[str], list[str]]


def _default_scanner() -> Scanner:
    """The ingest residual-identifier check; missing means we cannot save free text."""
    try:
        from archive.deid.residual import scan_text
    except ImportError as exc:
        raise CatalogueError(
            "cannot check free text for identifiers (archive.deid.residual is not"
            " available); nothing was saved. Reinstall the archive and try again."
        ) from exc
    return lambda text: list(scan_text(text, known=()))


def _stamp(now: datetime | None) -> tuple[str, int]:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ"), moment.year


class Catalogue:
    """Cases and collections over one repository (SQLite by default)."""

    def __init__(
        self,
        conn: Any,
        school_prefix: str,
        *,
        vocabulary: Vocabulary | None = None,
        on_change: ChangeSink | None = None,
        scanner: Scanner | None = None,
        repository: CatalogueRepository | None = None,
    ) -> None:
        prefix = (school_prefix or "").strip().upper()
        if not _PREFIX.match(prefix):
            raise CatalogueError(
                f"school prefix {school_prefix!r} must be 2 to 8 letters or digits, e.g. NSR."
            )
        self.prefix = prefix
        self.repo: CatalogueRepository = repository or repository_for(conn)
        self.vocabulary = vocabulary or load_vocabulary()
        self.on_change = on_change or ignore_changes
        self._scanner = scanner

    # -- cases from studies ----------------------------------------------------------
    def upsert_from_study(
        self,
        summary: StudySummary,
        orthanc_study_id: str,
        now: datetime | None = None,
        *,
        status: str = "available",
        actor: str = "system",
    ) -> Case:
        """Create the case for a stable study, or refresh the facts of its existing case.

        Idempotent on the study UID. Refreshing never touches teaching metadata, status
        (a withdrawn case stays withdrawn) or the id; counts and series follow the
        summary, which describes the whole study as Orthanc now holds it.
        """
        if status not in STATUSES:
            raise CatalogueError(f"status {status!r} must be one of {', '.join(STATUSES)}.")
        facts = self._facts(summary, orthanc_study_id)
        series = facts.pop("_series")
        stamp, year = _stamp(now)
        # Two nodes catalogue the same new study at once (PostgreSQL): the second insert
        # meets the unique study UID; its transaction is rolled back whole (its number
        # too) and run again, which then finds the first node's case and refreshes it.
        for attempt in range(1, _UPSERT_ATTEMPTS + 1):
            nested = self.repo.conn.in_transaction
            try:
                return self._upsert(facts, series, stamp, year, status, actor)
            except IntegrityError:
                if nested or attempt == _UPSERT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _upsert(
        self,
        facts: dict[str, Any],
        series: list[Any],
        stamp: str,
        year: int,
        status: str,
        actor: str,
    ) -> Case:
        number, refresh = 0, False
        with self.repo.transaction():
            existing = self.repo.case_for_study(facts["study_uid"])
            if existing is None:
                number = self.repo.next_value(f"case:{year}")
                case_id = f"{self.prefix}-{year}-{number:05d}"
                self.repo.insert_case(
                    {
                        "case_id": case_id,
                        **facts,
                        "status": status,
                        "added_at": stamp,
                        "updated_at": stamp,
                    }
                )
                action = "catalogue.case.create"
            else:
                case_id = existing.case_id
                self.repo.update_case(case_id, {**facts, "updated_at": stamp})
                action = "catalogue.case.refresh"
            self.repo.replace_series(case_id, series)
            case = self._get(case_id)
            refresh = existing is None and number in STATISTICS_AT
            self.on_change(
                CatalogueChange(
                    action,
                    case_id,
                    actor=actor,
                    detail={
                        "series_count": case.series_count,
                        "instance_count": case.instance_count,
                        "level": case.level,
                        "intake": case.intake,
                    },
                )
            )
        if refresh or (existing is None and number % 5000 == 0):
            self.optimize()
        return case

    def optimize(self) -> None:
        """Refresh the planner's statistics; cheap, safe to run from a nightly job."""
        self.repo.refresh_statistics()

    def _facts(self, s: StudySummary, orthanc_study_id: str) -> dict[str, Any]:
        """Check a summary field by field; anything odd is refused, not stored."""
        if not _UID.match(s.study_uid or "") or len(s.study_uid) > 64:
            raise CatalogueError("study UID is not a DICOM UID; the study was not catalogued.")
        if not _PSEUDONYM.match(s.patient_pseudonym or ""):
            raise CatalogueError("patient pseudonym is malformed; the study was not catalogued.")
        if s.level not in LEVELS:
            raise CatalogueError(f"level {s.level!r} must be one of {', '.join(LEVELS)}.")
        if s.intake not in INTAKES:
            raise CatalogueError(f"intake {s.intake!r} must be one of {', '.join(INTAKES)}.")
        if not re.match(r"^[A-Za-z0-9-]{1,64}$", orthanc_study_id or ""):
            raise CatalogueError("Orthanc study id is malformed; the study was not catalogued.")
        if not _AGE_BAND.match(s.age_band or ""):
            raise CatalogueError("age band must look like 40-44, 90+ or be empty.")
        sex = _SEXES.get((s.sex or "").strip().upper())
        if sex is None:
            raise CatalogueError("sex must be M, F, O or empty.")
        modalities: list[str] = []
        for m in [*s.modalities, *(x.modality for x in s.series)]:
            m = (m or "").strip().upper()
            if not _MODALITY.match(m):
                raise CatalogueError("a modality is malformed; the study was not catalogued.")
            if m not in modalities:
                modalities.append(m)
        counts = (s.series_count, s.instance_count, *(x.instance_count for x in s.series))
        if any(not isinstance(n, int) or n < 0 for n in counts):
            raise CatalogueError("series and instance counts must be whole numbers >= 0.")
        series = []
        for x in s.series:
            if not _UID.match(x.series_uid or "") or len(x.series_uid) > 64:
                raise CatalogueError("a series UID is malformed; the study was not catalogued.")
            series.append(
                SeriesSummary(
                    series_uid=x.series_uid,
                    modality=x.modality.strip().upper(),
                    description=self._clean_description(x.description),
                    instance_count=x.instance_count,
                    orthanc_series_id=x.orthanc_series_id,
                )
            )
        return {
            "study_uid": s.study_uid,
            "orthanc_study_id": orthanc_study_id,
            "patient_pseudonym": s.patient_pseudonym,
            "modalities": modalities,
            "body_part": self.vocabulary.body_part(s.body_part),
            "series_count": max(s.series_count, len(series)),
            "instance_count": max(s.instance_count, sum(x.instance_count for x in series)),
            "age_band": (s.age_band or "").strip(),
            "sex": sex,
            "level": s.level,
            "intake": s.intake,
            "study_description": self._clean_description(s.study_description),
            "_series": series,
        }

    def _clean_description(self, text: str) -> str:
        """DICOM descriptions were de-identified at ingest; re-check, and drop on doubt."""
        text = (text or "").strip()[:256]
        if not text:
            return ""
        try:
            return "" if self._scan(text) else text
        except CatalogueError:
            return ""

    # -- reading --------------------------------------------------------------------
    def get(self, case_id: str) -> Case:
        return self._get(case_id)

    def _get(self, case_id: str) -> Case:
        case = self.repo.get_case((case_id or "").strip().upper())
        if case is None:
            raise CaseNotFoundError(case_id)
        return case

    def case_for_study(self, study_uid: str) -> Case | None:
        return self.repo.case_for_study(study_uid)

    def cases_for_pseudonym(self, pseudonym: str) -> list[Case]:
        """Every case of one key-coded patient, withdrawn included (consent withdrawal)."""
        return self.repo.cases_for_pseudonym(pseudonym)

    # -- teaching metadata ------------------------------------------------------------
    def edit(
        self, case_id: str, changes: dict[str, Any], editor: str, now: datetime | None = None
    ) -> Case:
        """Apply teaching-metadata changes all together, or none of them.

        Every text value is scanned with the ingest residual-identifier check; a hit
        refuses the whole edit with IdentifierInTextError naming the field.
        """
        case = self._get(case_id)
        values = self._validated(changes)
        for name, value in values.items():
            texts = value if isinstance(value, list) else [value]
            for text in texts:
                hits = self._scan(text) if text else []
                if hits:
                    self._refused(case.case_id, editor, name, len(hits))
                    raise IdentifierInTextError(name, hits)
        stamp, _ = _stamp(now)
        with self.repo.transaction():
            self._get(case.case_id)
            self.repo.update_case(
                case.case_id,
                {
                    **values,
                    "edited_by": editor,
                    "edited_at": stamp,
                    "updated_at": stamp,
                    "vocabulary_version": self.vocabulary.version,
                },
            )
            self.on_change(
                CatalogueChange(
                    "catalogue.case.edit",
                    case.case_id,
                    actor=editor,
                    detail={"fields": ",".join(sorted(values))},
                )
            )
        return self._get(case.case_id)

    def annotate(
        self, case_id: str, field: str, text: str, editor: str, now: datetime | None = None
    ) -> Case:
        """Add to a field rather than replace it: a new paragraph, or new list items."""
        case = self._get(case_id)
        if field in LIST_FIELDS:
            current = list(getattr(case, field))
            added = [t for t in _as_list(text) if t not in current]
            return self.edit(case.case_id, {field: current + added}, editor, now)
        if field in TEXT_FIELDS:
            current = getattr(case, field)
            addition = (text or "").strip()
            if not addition:
                raise CatalogueError("nothing to add: give the text to append.")
            joined = f"{current}\n\n{addition}" if current else addition
            return self.edit(case.case_id, {field: joined}, editor, now)
        raise CatalogueError(
            f"cannot annotate {field!r}; choose one of {', '.join(TEXT_FIELDS + LIST_FIELDS)}."
        )

    def _validated(self, changes: dict[str, Any]) -> dict[str, Any]:
        if not changes:
            raise CatalogueError("no changes given; name at least one field to change.")
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in EDITABLE_FIELDS:
                raise CatalogueError(
                    f"{name!r} cannot be edited; editable fields: {', '.join(EDITABLE_FIELDS)}."
                )
            if name in TEXT_FIELDS:
                if value is not None and not isinstance(value, str):
                    raise CatalogueError(f"{name} must be text.")
                text = (value or "").strip()
                if len(text) > MAX_TEXT:
                    raise CatalogueError(f"{name} is longer than {MAX_TEXT} characters.")
                values[name] = text
            elif name in LIST_FIELDS:
                items = _as_list(value)
                if len(items) > MAX_LIST_ITEMS or any(len(i) > 200 for i in items):
                    raise CatalogueError(
                        f"{name} takes at most {MAX_LIST_ITEMS} items of 200 characters."
                    )
                values[name] = items
            else:
                values[name] = self._choice(name, value)
        return values

    def _choice(self, name: str, value: Any) -> str:
        text = (value or "").strip().lower() if isinstance(value, str | type(None)) else None
        if text is None:
            raise CatalogueError(f"{name} must be text.")
        allowed: Sequence[str]
        if name == "category":
            allowed = tuple(self.vocabulary.categories)
        elif name == "difficulty":
            allowed = tuple(self.vocabulary.difficulties)
        else:
            allowed = REVIEW_STATES
        if name == "review_state" and not text:
            text = "draft"
        if text and text not in allowed:
            raise CatalogueError(f"{name} {value!r} is not one of: {', '.join(allowed)}.")
        return text

    def _scan(self, text: str) -> list[str]:
        if self._scanner is None:
            self._scanner = _default_scanner()
        return self._scanner(text)

    def _refused(self, case_id: str, editor: str, field: str, hits: int) -> None:
        self.on_change(
            CatalogueChange(
                "catalogue.case.edit",
                case_id,
                actor=editor,
                outcome="denied",
                detail={"reason": "identifier-in-text", "field": field, "hits": hits},
            )
        )

    # -- status and level ---------------------------------------------------------
    def set_status(self, case_id: str, status: str, *, actor: str = "system") -> Case:
        if status not in STATUSES:
            raise CatalogueError(f"status {status!r} must be one of {', '.join(STATUSES)}.")
        return self._set(case_id, "status", status, actor)

    def set_level(self, case_id: str, level: str, *, actor: str = "system") -> Case:
        if level not in LEVELS:
            raise CatalogueError(f"level {level!r} must be one of {', '.join(LEVELS)}.")
        return self._set(case_id, "level", level, actor)

    def _set(self, case_id: str, column: str, value: str, actor: str) -> Case:
        stamp, _ = _stamp(None)
        with self.repo.transaction():
            case = self._get(case_id)
            self.repo.update_case(case.case_id, {column: value, "updated_at": stamp})
            self.on_change(
                CatalogueChange(
                    f"catalogue.case.{column}",
                    case.case_id,
                    actor=actor,
                    detail={"from": getattr(case, column), "to": value},
                )
            )
        return self._get(case.case_id)

    # -- search ---------------------------------------------------------------------
    def search(
        self,
        query: str = "",
        filters: SearchFilters | None = None,
        page: int = 1,
        per_page: int = 20,
        sort: str = "relevance",
    ) -> SearchPage:
        """Full text (bm25-ranked) plus filters. Withdrawn cases only when asked by status."""
        if sort not in SORTS:
            raise CatalogueError(f"sort {sort!r} must be one of {', '.join(SORTS)}.")
        if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            raise CatalogueError(f"page must be >= 1 and per_page 1 to {MAX_PER_PAGE}.")
        filters = filters or SearchFilters()
        filters = replace(
            filters,
            modality=tuple(m.upper() for m in filters.modality),
            body_part=tuple(self.vocabulary.body_part(b) for b in filters.body_part),
            category=tuple(c.lower() for c in filters.category),
            difficulty=tuple(d.lower() for d in filters.difficulty),
            collection=tuple(c.upper() for c in filters.collection),
        )
        for name, allowed in (("status", STATUSES), ("level", LEVELS)):
            for value in getattr(filters, name):
                if value not in allowed:
                    raise CatalogueError(f"{name} {value!r} must be one of {', '.join(allowed)}.")
        total, items, matched = self.repo.search(
            parse_query(query), filters, per_page, (page - 1) * per_page, sort
        )
        return SearchPage(total, items, page, per_page, matched)

    # -- collections ------------------------------------------------------------------
    def create_collection(
        self, title: str, description: str, owner: str, now: datetime | None = None
    ) -> Collection:
        title, description = self._collection_text(title, description)
        stamp, _ = _stamp(now)
        with self.repo.transaction():
            number = self.repo.next_value("collection")
            collection_id = f"{self.prefix}-COL-{number:04d}"
            self.repo.insert_collection(
                {
                    "collection_id": collection_id,
                    "title": title,
                    "description": description,
                    "owner": owner,
                    "created_at": stamp,
                    "updated_at": stamp,
                }
            )
            self.on_change(
                CatalogueChange("catalogue.collection.create", collection_id, actor=owner)
            )
        return self.get_collection(collection_id)

    def edit_collection(
        self,
        collection_id: str,
        editor: str,
        title: str | None = None,
        description: str | None = None,
    ) -> Collection:
        current = self.get_collection(collection_id)
        new_title, new_description = self._collection_text(
            current.title if title is None else title,
            current.description if description is None else description,
        )
        fields = [n for n, v in (("title", title), ("description", description)) if v is not None]
        stamp, _ = _stamp(None)
        with self.repo.transaction():
            self.repo.update_collection(
                current.collection_id,
                {"title": new_title, "description": new_description, "updated_at": stamp},
            )
            self.on_change(
                CatalogueChange(
                    "catalogue.collection.edit",
                    current.collection_id,
                    actor=editor,
                    detail={"fields": ",".join(fields)},
                )
            )
        return self.get_collection(current.collection_id)

    def share_collection(self, collection_id: str, editors: Sequence[str], by: str) -> Collection:
        """Let exactly these users edit the collection beside its owner (empty: nobody)."""
        names = _unique([(e or "").strip() for e in editors if (e or "").strip()])
        if any(not _USER.match(n) for n in names):
            raise CatalogueError("editors are account names: letters, digits, . _ - only.")
        current = self.get_collection(collection_id)
        stamp, _ = _stamp(None)
        with self.repo.transaction():
            self.repo.set_collection_editors(
                current.collection_id, [n for n in names if n != current.owner], by, stamp
            )
            self.repo.update_collection(current.collection_id, {"updated_at": stamp})
            self.on_change(
                CatalogueChange(
                    "catalogue.collection.share",
                    current.collection_id,
                    actor=by,
                    detail={"editors": ",".join(names)[:1000]},
                )
            )
        return self.get_collection(current.collection_id)

    def delete_collection(self, collection_id: str, editor: str) -> Collection:
        """Delete the collection (its cases stay in the catalogue); returns what it was."""
        current = self.get_collection(collection_id, include_withdrawn=True)
        with self.repo.transaction():
            self.repo.delete_collection(current.collection_id)
            self.on_change(
                CatalogueChange(
                    "catalogue.collection.delete",
                    current.collection_id,
                    actor=editor,
                    detail={"case_count": current.size},
                )
            )
        return current

    def _collection_text(self, title: str, description: str) -> tuple[str, str]:
        title, description = (title or "").strip(), (description or "").strip()
        if not title or len(title) > 200:
            raise CatalogueError("a collection needs a title of 1 to 200 characters.")
        if len(description) > MAX_TEXT:
            raise CatalogueError(f"description is longer than {MAX_TEXT} characters.")
        for name, text in (("title", title), ("description", description)):
            hits = self._scan(text) if text else []
            if hits:
                raise IdentifierInTextError(name, hits)
        return title, description

    def get_collection(self, collection_id: str, include_withdrawn: bool = False) -> Collection:
        collection = self.repo.get_collection(
            (collection_id or "").strip().upper(), include_withdrawn
        )
        if collection is None:
            raise CollectionNotFoundError(collection_id)
        return collection

    def list_collections(self) -> list[Collection]:
        return self.repo.list_collections()

    def add_to_collection(
        self,
        collection_id: str,
        case_ids: Sequence[str],
        editor: str,
        position: int | None = None,
    ) -> Collection:
        """Insert cases (at `position`, 1-based, or at the end); already-present ones move."""
        cases = [self._get(c).case_id for c in case_ids]
        for case_id in cases:
            if self._get(case_id).status == "withdrawn":
                raise CatalogueError(f"{case_id} is withdrawn and cannot join a collection.")

        def change(current: list[str]) -> list[str]:
            rest = [c for c in current if c not in cases]
            at = len(rest) if position is None else max(0, min(position - 1, len(rest)))
            return rest[:at] + _unique(cases) + rest[at:]

        return self._change_items(collection_id, editor, "add", cases, change)

    def remove_from_collection(
        self, collection_id: str, case_ids: Sequence[str], editor: str
    ) -> Collection:
        targets = [(c or "").strip().upper() for c in case_ids]

        def change(current: list[str]) -> list[str]:
            missing = [c for c in targets if c not in current]
            if missing:
                raise CatalogueError(f"{missing[0]} is not in {collection_id}; nothing removed.")
            return [c for c in current if c not in targets]

        return self._change_items(collection_id, editor, "remove", targets, change)

    def reorder_collection(
        self, collection_id: str, case_ids: Sequence[str], editor: str
    ) -> Collection:
        """Put the named cases first, in the order given; the others follow as they were."""
        targets = _unique([(c or "").strip().upper() for c in case_ids])

        def change(current: list[str]) -> list[str]:
            missing = [c for c in targets if c not in current]
            if missing:
                raise CatalogueError(f"{missing[0]} is not in {collection_id}; add it first.")
            return targets + [c for c in current if c not in targets]

        return self._change_items(collection_id, editor, "reorder", targets, change)

    def move_in_collection(
        self, collection_id: str, case_id: str, position: int, editor: str
    ) -> Collection:
        """Move one case to a 1-based position."""
        target = (case_id or "").strip().upper()

        def change(current: list[str]) -> list[str]:
            if target not in current:
                raise CatalogueError(f"{target} is not in {collection_id}; add it first.")
            rest = [c for c in current if c != target]
            at = max(0, min(position - 1, len(rest)))
            return rest[:at] + [target] + rest[at:]

        return self._change_items(collection_id, editor, "reorder", [target], change)

    def _change_items(
        self,
        collection_id: str,
        editor: str,
        verb: str,
        case_ids: list[str],
        change: Callable[[list[str]], list[str]],
    ) -> Collection:
        collection = self.get_collection(collection_id)
        stamp, _ = _stamp(None)
        with self.repo.transaction():
            current = self.repo.collection_case_ids(collection.collection_id)
            self.repo.set_collection_items(collection.collection_id, change(current), stamp)
            self.repo.update_collection(collection.collection_id, {"updated_at": stamp})
            self.on_change(
                CatalogueChange(
                    f"catalogue.collection.{verb}",
                    collection.collection_id,
                    actor=editor,
                    detail=_case_detail(case_ids),
                )
            )
        return self.get_collection(collection.collection_id)


def _case_detail(case_ids: Sequence[str]) -> dict[str, str | int]:
    """Audit detail is flat and bounded: the count, and the ids while they fit."""
    joined = ",".join(case_ids)
    detail: dict[str, str | int] = {"case_count": len(case_ids)}
    if len(joined) <= 1000:
        detail["cases"] = joined
    return detail


def _as_list(value: Any) -> list[str]:
    """Lists from a list or from comma/newline-separated text; trimmed, de-duplicated."""
    if value is None:
        return []
    if isinstance(value, str):
        value = re.split(r"[,\n]", value)
    if not isinstance(value, list | tuple):
        raise CatalogueError("expected a list of words or comma-separated text.")
    return _unique([str(v).strip() for v in value if str(v).strip()])


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))

"""The teaching catalogue: cases, teaching metadata, collections and search.

from archive.catalogue import Catalogue, StudySummary, SearchFilters
catalogue = Catalogue(conn, "NSR")
case = catalogue.upsert_from_study(summary, orthanc_study_id, now)
page = catalogue.search("subtle pneumothorax", SearchFilters.of(modality="CT"))
"""

from archive.catalogue.catalogue import CASE_ID, Catalogue
from archive.catalogue.changes import CatalogueChange, ChangeSink
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
    CollectionItem,
    SearchFilters,
    SearchPage,
    SeriesSummary,
    StudySummary,
)
from archive.catalogue.repository import (
    CatalogueRepository,
    SqliteCatalogueRepository,
    repository_for,
)
from archive.catalogue.vocabulary import Vocabulary, load_vocabulary

__all__ = [
    "CASE_ID",
    "EDITABLE_FIELDS",
    "INTAKES",
    "LEVELS",
    "LIST_FIELDS",
    "REVIEW_STATES",
    "SORTS",
    "STATUSES",
    "TEXT_FIELDS",
    "Case",
    "CaseNotFoundError",
    "Catalogue",
    "CatalogueChange",
    "CatalogueError",
    "CatalogueRepository",
    "ChangeSink",
    "Collection",
    "CollectionItem",
    "CollectionNotFoundError",
    "IdentifierInTextError",
    "SearchFilters",
    "SearchPage",
    "SeriesSummary",
    "SqliteCatalogueRepository",
    "repository_for",
    "StudySummary",
    "Vocabulary",
    "load_vocabulary",
]

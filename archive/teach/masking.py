"""Who sees an unknown unrevealed, and what of a case is then left out.

Those who may present unknowns (`quiz.mark`: they write the teaching text) always see
everything; anyone else sees an unknown as "Unknown case" until they reveal it
themselves. Used by every way a case reaches a person: the quiz page, the viewer's
DICOMweb, the catalogue's web pages and its REST routes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from archive.core import Resource, authorise
from archive.teach.store import TeachStore

NEUTRAL_TITLE = "Unknown case"
HIDDEN_TEXT = ("findings", "diagnosis", "differential", "discussion", "teaching_points",
               "references", "study_description")  # fmt: skip


def is_presenter(actions, principal) -> bool:
    """True for those who may present unknowns (they see every case whole)."""
    resource = Resource(kind="case", state="available")
    return bool(authorise(actions, principal, "quiz.mark", resource))


def hidden_cases(conn, actions, principal, case_ids) -> set[str]:
    """The case ids among `case_ids` that are unknowns this person has not revealed."""
    if principal is None or is_presenter(actions, principal):
        return set()
    store = TeachStore(conn)
    return {c for c in case_ids if store.hidden_for(c, principal.user)}


def masked(case: Any) -> Any:
    """The case as an unknown: neutral title, no teaching text that names the finding,
    no keywords, no study or series descriptions."""
    series = [replace(s, description="") for s in getattr(case, "series", [])]
    blank = {name: "" for name in HIDDEN_TEXT if hasattr(case, name)}
    return replace(case, title=NEUTRAL_TITLE, keywords=[], series=series, **blank)

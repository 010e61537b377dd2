"""What other rooms may know of the catalogue without its rules: read-only lists.

Closure counts the cases it holds, transfer and closure list the cases they carry,
fsck compares cases with Orthanc's index; they call these instead of reading the
catalogue's tables (issue 27: no room reads another room's tables).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from archive.catalogue.tables import cases


@dataclass(frozen=True)
class CaseHolding:
    """One case as the other rooms see it: its id, its study in Orthanc, its state."""

    case_id: str
    orthanc_study_id: str
    instance_count: int
    status: str


def holdings(conn: Any, statuses: Iterable[str] | None = None) -> list[CaseHolding]:
    """Every case (or those in `statuses`), in case-id order."""
    statement = select(
        cases.c.case_id, cases.c.orthanc_study_id, cases.c.instance_count, cases.c.status
    ).order_by(cases.c.case_id)
    if statuses is not None:
        statement = statement.where(cases.c.status.in_(list(statuses)))
    return [CaseHolding(r[0], r[1], int(r[2]), r[3]) for r in conn.execute(statement)]


def count_held(conn: Any) -> int:
    """How many cases the archive holds (every status but withdrawn)."""
    statement = select(func.count()).select_from(cases).where(cases.c.status != "withdrawn")
    return int(conn.execute(statement).scalar())

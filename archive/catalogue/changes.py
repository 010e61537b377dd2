"""A record of each catalogue change, handed to whoever audits it.

The catalogue does not know where the audit log lives or who is calling through which
interface; the CLI and the REST routes do. So `Catalogue` reports every change (and
every refused edit) to an `on_change` callback *before* it commits: if auditing fails,
the change is rolled back. Details carry field names, ids and enumerated values only,
never the free text a user typed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CatalogueChange:
    action: str  # e.g. "catalogue.case.edit"
    target: str  # a case id or collection id
    actor: str
    outcome: str = "success"  # "success" | "denied" (an edit refused by a check)
    detail: dict[str, str | int | bool] = field(default_factory=dict)  # flat


ChangeSink = Callable[[CatalogueChange], None]


def ignore_changes(change: CatalogueChange) -> None:
    """Default sink for callers that audit elsewhere (tests, benchmarks)."""

"""Catalogue errors: each message says what is wrong and what to do next."""

from __future__ import annotations

from archive.errors import ArchiveError


class CatalogueError(ArchiveError):
    """A catalogue request that cannot be carried out as asked."""


class CaseNotFoundError(CatalogueError):
    def __init__(self, case_id: str) -> None:
        super().__init__(f"no case {case_id!r}; list cases with `archive cases list`.")


class CollectionNotFoundError(CatalogueError):
    def __init__(self, collection_id: str) -> None:
        super().__init__(
            f"no collection {collection_id!r}; list them with `archive collections list`."
        )


class IdentifierInTextError(CatalogueError):
    """Free text looked like it carries a patient identifier; nothing was saved.

    The message names the field and the kind of identifier, never the matched text.
    """

    def __init__(self, field: str, hits: list[str]) -> None:
        self.field = field
        self.hits = list(hits)
        kinds = "; ".join(dict.fromkeys(hits)) or "unknown kind"
        super().__init__(
            f"{field} contains what looks like a patient identifier ({kinds});"
            " remove it and save again."
        )

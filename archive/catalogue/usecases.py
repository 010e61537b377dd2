"""The catalogue's use cases (issue 21): every act on cases and collections, one way.

Each function takes the room (ports, school prefix, vocabulary), the authenticated
principal and what the act needs; it authorises with `archive.core` (actions case.view,
case.edit, collection.view|create|edit|share|delete in policies/access/actions.toml),
acts in one transaction, writes one audit record (the names the catalogue has always
used: catalogue.case.edit, catalogue.collection.add, ...) and returns a typed result or
a `Refusal` with the reason and what to do next. The REST routes, the web pages and the
CLI all call these; none of them checks a role itself.

Collections have owners: the owner (the person who created it) edits it and may share
editing with named users; everyone who may view the catalogue reads it; whoever the
policy's `owner_override` names (school personnel) may change any collection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from archive.access.principal import Principal
from archive.catalogue.catalogue import Catalogue, Scanner
from archive.catalogue.errors import (
    CaseNotFoundError,
    CatalogueError,
    CollectionNotFoundError,
    IdentifierInTextError,
)
from archive.catalogue.model import Case, Collection, SearchFilters, SearchPage
from archive.catalogue.vocabulary import Vocabulary
from archive.core import Ports, Refusal, Refused, Resource, authorise, perform

FILTERS = ("modality", "body_part", "category", "difficulty", "level", "collection", "status")


@dataclass
class CatalogueRoom:
    """What the catalogue's use cases need: the ports and how to build the catalogue."""

    ports: Ports
    school_prefix: str
    vocabulary: Vocabulary | None = None
    scanner: Scanner | None = None

    _catalogue: Catalogue | None = field(default=None, repr=False)  # prebuilt, or built once

    def catalogue(self, conn: Any = None) -> Catalogue:
        """The catalogue on the ports' connection, built (and its tables migrated) once,
        before any use case opens its transaction. No change sink: `perform` writes the
        one audit record of each act."""
        if self._catalogue is None:
            self._catalogue = Catalogue(
                self.ports.db, self.school_prefix, vocabulary=self.vocabulary, scanner=self.scanner
            )
        return self._catalogue

    def may(self, principal: Principal | None, action: str, resource: Resource | None = None):
        """A Permit or Refusal without acting (e.g. which form to show)."""
        return authorise(self.ports.actions, principal, action, resource)


# -- results ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Found:
    """A search page and what the audit keeps of the search (never the typed words)."""

    page: SearchPage
    filters: tuple[str, ...]
    full_text: bool

    def audit(self) -> dict[str, Any]:
        return {
            "results": self.page.total,
            "page": self.page.page,
            "full_text": self.full_text,
            "filters": ",".join(self.filters),
        }


@dataclass(frozen=True)
class Shown:
    """One case as the principal may see it."""

    case: Case

    def audit(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class CaseEdited:
    case: Case
    fields: tuple[str, ...]

    def audit(self) -> dict[str, Any]:
        return {"fields": ",".join(sorted(self.fields))}


@dataclass(frozen=True)
class Collections:
    items: list[Collection]

    def audit(self) -> dict[str, Any]:
        return {"results": len(self.items)}


@dataclass(frozen=True)
class CollectionResult:
    """A collection after (or, for a deletion, before) the act."""

    collection: Collection
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def audit_target(self) -> str:
        return self.collection.collection_id

    def audit(self) -> dict[str, Any]:
        return dict(self.detail)


# -- helpers ------------------------------------------------------------------------------
def _refuse(action: str, exc: CatalogueError) -> Refused:
    """A catalogue error as a refusal: not found (404) or invalid input (400)."""
    if isinstance(exc, CaseNotFoundError | CollectionNotFoundError):
        return Refused(Refusal(action, str(exc), "List what exists first.", "not_found"))
    next_step = "Correct it and try again; nothing was saved."
    if isinstance(exc, IdentifierInTextError):
        next_step = "Remove the identifier from the text and save again; nothing was saved."
    return Refused(Refusal(action, str(exc), next_step, "invalid"))


def _guarded(action: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except CatalogueError as exc:
        raise _refuse(action, exc) from None


def _may_edit_cases(room: CatalogueRoom, principal: Principal | None) -> bool:
    return bool(room.may(principal, "case.edit"))


def _visible(room: CatalogueRoom, catalogue: Catalogue, principal, case_id: str, action: str):
    """The case, refused as not found when it does not exist or is not available to
    someone who may not edit cases."""
    case = _guarded(action, lambda: catalogue.get(case_id))
    if case.status != "available" and not _may_edit_cases(room, principal):
        raise _refuse(action, CaseNotFoundError(case_id))
    return case


# -- cases --------------------------------------------------------------------------------
def search_cases(
    room: CatalogueRoom,
    principal: Principal | None,
    query: str = "",
    filters: dict[str, Sequence[str]] | None = None,
    *,
    page: int = 1,
    per_page: int = 20,
    sort: str = "relevance",
) -> Found | Refusal:
    """Search the catalogue; someone who may not edit cases sees available cases only."""
    chosen = {k: list(v) for k, v in (filters or {}).items() if v}
    unknown = sorted(set(chosen) - set(FILTERS))
    if unknown:
        return Refusal("case.view", f"unknown filter {unknown[0]!r}", "", "invalid")
    if not _may_edit_cases(room, principal):
        chosen["status"] = ["available"]

    def act(tx, permit):
        result = _guarded(
            "case.view",
            lambda: room.catalogue(tx).search(
                query or "", SearchFilters.of(**chosen), page=page, per_page=per_page, sort=sort
            ),
        )
        return Found(result, tuple(sorted(chosen)), bool((query or "").strip()))

    return perform_(room, principal, "case.view", None, act, "catalogue.case.search")


def view_case(
    room: CatalogueRoom, principal: Principal | None, case_id: str, *, record: str = ""
) -> Shown | Refusal:
    """One case (`record`: the audit name, e.g. catalogue.case.thumbnail for an image)."""
    case_id = (case_id or "").strip().upper()

    def act(tx, permit):
        return Shown(_visible(room, room.catalogue(tx), principal, case_id, "case.view"))

    return perform_(
        room, principal, "case.view", None, act, record or "catalogue.case.view", case_id
    )


def edit_case(
    room: CatalogueRoom, principal: Principal | None, case_id: str, changes: dict[str, Any]
) -> CaseEdited | Refusal:
    """Change teaching metadata (title, history, findings, teaching text, levels of
    review, keywords...) all together or not at all; free text is checked for
    identifiers first."""
    case_id = (case_id or "").strip().upper()

    def act(tx, permit):
        catalogue = room.catalogue(tx)
        _visible(room, catalogue, principal, case_id, "case.edit")
        case = _guarded("case.edit", lambda: catalogue.edit(case_id, changes, principal.user))
        return CaseEdited(case, tuple(changes))

    return perform_(room, principal, "case.edit", None, act, "catalogue.case.edit", case_id)


def annotate_case(
    room: CatalogueRoom, principal: Principal | None, case_id: str, field_name: str, text: str
) -> CaseEdited | Refusal:
    """Add a paragraph to a text field, or items to keywords/authors."""
    case_id = (case_id or "").strip().upper()

    def act(tx, permit):
        catalogue = room.catalogue(tx)
        _visible(room, catalogue, principal, case_id, "case.edit")
        case = _guarded(
            "case.edit", lambda: catalogue.annotate(case_id, field_name, text, principal.user)
        )
        return CaseEdited(case, (field_name,))

    return perform_(room, principal, "case.edit", None, act, "catalogue.case.edit", case_id)


# -- collections ----------------------------------------------------------------------------
def _collection_resource(room: CatalogueRoom, collection_id: str, action: str, *, shared=True):
    """The collection as the rules see it (owner, shared editors), read in the act's
    transaction; a missing collection is refused as not found."""

    def resource(tx) -> Resource:
        collection = _guarded(
            action, lambda: room.catalogue(tx).get_collection(collection_id, True)
        )
        return Resource(
            kind=f"collection {collection.collection_id}",
            id=collection.collection_id,
            owner=collection.owner or None,
            shared_with=frozenset(collection.editors) if shared else frozenset(),
        )

    return resource


def list_collections(room: CatalogueRoom, principal: Principal | None) -> Collections | Refusal:
    def act(tx, permit):
        return Collections(room.catalogue(tx).list_collections())

    return perform_(room, principal, "collection.view", None, act, "catalogue.collection.list")


def view_collection(
    room: CatalogueRoom,
    principal: Principal | None,
    collection_id: str,
    *,
    include_withdrawn: bool = False,
) -> CollectionResult | Refusal:
    collection_id = (collection_id or "").strip().upper()

    def act(tx, permit):
        catalogue = room.catalogue(tx)
        found = _guarded(
            "collection.view",
            lambda: catalogue.get_collection(collection_id, include_withdrawn),
        )
        return CollectionResult(found)

    return perform_(
        room, principal, "collection.view", None, act, "catalogue.collection.view", collection_id
    )


def create_collection(
    room: CatalogueRoom, principal: Principal | None, title: str, description: str = ""
) -> CollectionResult | Refusal:
    """A new, empty collection owned by the principal."""

    def act(tx, permit):
        made = _guarded(
            "collection.create",
            lambda: room.catalogue(tx).create_collection(title, description, principal.user),
        )
        return CollectionResult(made)

    return perform_(room, principal, "collection.create", None, act, "catalogue.collection.create")


def _change(
    room: CatalogueRoom,
    principal: Principal | None,
    collection_id: str,
    action: str,
    record: str,
    change: Callable[[Catalogue, str], Collection],
    detail: dict[str, Any] | None = None,
    *,
    shared: bool = True,
) -> CollectionResult | Refusal:
    collection_id = (collection_id or "").strip().upper()

    def act(tx, permit):
        changed = _guarded(action, lambda: change(room.catalogue(tx), principal.user))
        return CollectionResult(changed, dict(detail or {}))

    resource = _collection_resource(room, collection_id, action, shared=shared)
    return perform_(room, principal, action, resource, act, record, collection_id)


def edit_collection(
    room, principal, collection_id: str, *, title: str | None = None,
    description: str | None = None,
) -> CollectionResult | Refusal:  # fmt: skip
    fields = [n for n, v in (("title", title), ("description", description)) if v is not None]
    return _change(
        room, principal, collection_id, "collection.edit", "catalogue.collection.edit",
        lambda c, who: c.edit_collection(collection_id, who, title=title,
                                         description=description),
        {"fields": ",".join(fields)},
    )  # fmt: skip


def _cases_detail(case_ids: Sequence[str]) -> dict[str, Any]:
    ids = [(c or "").strip().upper() for c in case_ids]
    joined = ",".join(ids)
    return {"case_count": len(ids), **({"cases": joined} if len(joined) <= 1000 else {})}


def add_to_collection(
    room, principal, collection_id: str, case_ids: Sequence[str], position: int | None = None
) -> CollectionResult | Refusal:
    return _change(
        room, principal, collection_id, "collection.edit", "catalogue.collection.add",
        lambda c, who: c.add_to_collection(collection_id, case_ids, who, position),
        _cases_detail(case_ids),
    )  # fmt: skip


def remove_from_collection(
    room, principal, collection_id: str, case_ids: Sequence[str]
) -> CollectionResult | Refusal:
    return _change(
        room, principal, collection_id, "collection.edit", "catalogue.collection.remove",
        lambda c, who: c.remove_from_collection(collection_id, case_ids, who),
        _cases_detail(case_ids),
    )  # fmt: skip


def reorder_collection(
    room, principal, collection_id: str, case_ids: Sequence[str]
) -> CollectionResult | Refusal:
    """Put the named cases first, in the order given."""
    return _change(
        room, principal, collection_id, "collection.edit", "catalogue.collection.reorder",
        lambda c, who: c.reorder_collection(collection_id, case_ids, who),
        _cases_detail(case_ids),
    )  # fmt: skip


def move_in_collection(
    room, principal, collection_id: str, case_id: str, position: int
) -> CollectionResult | Refusal:
    return _change(
        room, principal, collection_id, "collection.edit", "catalogue.collection.reorder",
        lambda c, who: c.move_in_collection(collection_id, case_id, position, who),
        _cases_detail([case_id]),
    )  # fmt: skip


def share_collection(
    room, principal, collection_id: str, editors: Sequence[str]
) -> CollectionResult | Refusal:
    """Let exactly these users edit the collection beside its owner (owner only)."""
    return _change(
        room, principal, collection_id, "collection.share", "catalogue.collection.share",
        lambda c, who: c.share_collection(collection_id, editors, who),
        {"editors": ",".join(editors)[:1000]}, shared=False,
    )  # fmt: skip


def delete_collection(room, principal, collection_id: str) -> CollectionResult | Refusal:
    """Delete a collection (owner only); its cases stay in the catalogue."""
    return _change(
        room, principal, collection_id, "collection.delete", "catalogue.collection.delete",
        lambda c, who: c.delete_collection(collection_id, who), shared=False,
    )  # fmt: skip


def perform_(room, principal, action, resource, act, record, target=None):
    room.catalogue()  # migrations run outside the act's transaction
    return perform(room.ports, principal, action, resource, act, target=target, record=record)

"""Collections: ordered sets of cases with their own title, every change reported."""

from __future__ import annotations

import pytest

from archive.catalogue import (
    Catalogue,
    CatalogueChange,
    CatalogueError,
    CollectionNotFoundError,
    IdentifierInTextError,
)
from archive.db import connect
from tests.unit.test_catalogue import NHS, NOW, fake_scan, study


@pytest.fixture
def changes() -> list[CatalogueChange]:
    return []


@pytest.fixture
def cat(changes: list) -> Catalogue:
    return Catalogue(connect(":memory:"), "NSR", on_change=changes.append, scanner=fake_scan)


@pytest.fixture
def cases(cat: Catalogue) -> list[str]:
    return [cat.upsert_from_study(study(n), f"o{n}", NOW).case_id for n in range(1, 6)]


def order(cat: Catalogue, collection_id: str, **kw: bool) -> list[str]:
    return [i.case_id for i in cat.get_collection(collection_id, **kw).items]


def test_create_list_get(cat: Catalogue, changes: list) -> None:
    a = cat.create_collection("FRCR 2B chest", "Exam preparation", "trainer1", NOW)
    b = cat.create_collection("Neuro emergencies", "", "trainer2", NOW)
    assert (a.collection_id, b.collection_id) == ("NSR-COL-0001", "NSR-COL-0002")
    assert [c.title for c in cat.list_collections()] == ["FRCR 2B chest", "Neuro emergencies"]
    got = cat.get_collection("nsr-col-0001")
    assert (got.title, got.description, got.owner, got.items) == (
        "FRCR 2B chest",
        "Exam preparation",
        "trainer1",
        [],
    )
    assert changes[-1].action == "catalogue.collection.create"
    with pytest.raises(CollectionNotFoundError):
        cat.get_collection("NSR-COL-0099")
    with pytest.raises(CatalogueError):
        cat.create_collection("  ", "", "trainer1")
    with pytest.raises(IdentifierInTextError, match="description"):
        cat.create_collection("Set", f"for patient {NHS}", "trainer1")


def test_add_remove_reorder_move(cat: Catalogue, cases: list[str], changes: list) -> None:
    c1, c2, c3, c4, c5 = cases
    col = cat.create_collection("Set", "", "trainer1").collection_id
    cat.add_to_collection(col, [c1, c2, c3], "trainer1")
    assert order(cat, col) == [c1, c2, c3]
    cat.add_to_collection(col, [c4], "trainer1", position=1)
    assert order(cat, col) == [c4, c1, c2, c3]
    cat.add_to_collection(col, [c1], "trainer1")  # already there: moves to the end
    assert order(cat, col) == [c4, c2, c3, c1]
    cat.reorder_collection(col, [c3, c2], "trainer1")
    assert order(cat, col) == [c3, c2, c4, c1]
    cat.reorder_collection(col, [c1, c4, c3, c2], "trainer1")
    assert order(cat, col) == [c1, c4, c3, c2]
    cat.move_in_collection(col, c1, 3, "trainer1")
    assert order(cat, col) == [c4, c3, c1, c2]
    cat.remove_from_collection(col, [c3], "trainer1")
    got = cat.get_collection(col)
    assert [(i.case_id, i.position) for i in got.items] == [(c4, 1), (c1, 2), (c2, 3)]
    assert got.size == 3
    last = changes[-1]
    assert (last.action, last.target, last.detail) == (
        "catalogue.collection.remove",
        col,
        {"case_count": 1, "cases": c3},
    )
    with pytest.raises(CatalogueError, match="not in"):
        cat.remove_from_collection(col, [c5], "trainer1")
    with pytest.raises(CatalogueError, match="not in"):
        cat.reorder_collection(col, [c5], "trainer1")
    assert order(cat, col) == [c4, c1, c2]  # refused changes left it as it was


def test_withdrawn_case_hidden_in_collection_and_cannot_join(
    cat: Catalogue, cases: list[str]
) -> None:
    c1, c2, c3, *_ = cases
    col = cat.create_collection("Set", "", "trainer1").collection_id
    cat.add_to_collection(col, [c1, c2], "trainer1")
    cat.set_status(c1, "withdrawn")
    assert order(cat, col) == [c2]
    assert order(cat, col, include_withdrawn=True) == [c1, c2]
    with pytest.raises(CatalogueError, match="withdrawn"):
        cat.add_to_collection(col, [c1, c3], "trainer1")
    assert order(cat, col, include_withdrawn=True) == [c1, c2]


def test_edit_collection(cat: Catalogue, changes: list) -> None:
    col = cat.create_collection("Set", "old", "trainer1").collection_id
    got = cat.edit_collection(col, "trainer2", title="Chest set")
    assert (got.title, got.description) == ("Chest set", "old")
    assert changes[-1].detail == {"fields": "title"}

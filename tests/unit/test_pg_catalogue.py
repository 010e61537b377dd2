"""The same room tests again, with every `connect` on PostgreSQL (see conftest.py)."""

import pytest

from archive.db import connect as sqlite_connect
from tests.unit import test_catalogue as room
from tests.unit.conftest import run_on_postgres
from tests.unit.test_catalogue import *  # noqa: F403 - the same tests, collected here too


@pytest.fixture(autouse=True)
def _on_postgres(monkeypatch, pg):
    run_on_postgres(monkeypatch, pg, room)


# Search behaviour the SQLite tests do not pin down, checked here on both backends.
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_phrases_operators_and_common_words(backend, pg):
    cat = room.Catalogue(
        pg.connect("phrases") if backend == "postgresql" else sqlite_connect(":memory:"),
        "NSR",
        scanner=room.fake_scan,
    )
    s = room.study(7)
    case = cat.upsert_from_study(s, "o7", room.datetime(2026, 2, 1, tzinfo=room.UTC))
    cat.edit(case.case_id, {"title": "Air bronchogram in the left lower lobe"}, "trainer1")
    other = cat.upsert_from_study(room.study(8), "o8", room.datetime(2026, 2, 2, tzinfo=room.UTC))
    cat.edit(other.case_id, {"title": "Bronchogram of the airways, air trapping"}, "trainer1")
    assert room.found(cat.search('"air bronchogram"')) == [case.case_id]
    assert set(room.found(cat.search("air bronchogram"))) == {case.case_id, other.case_id}
    assert room.found(cat.search("in the")) == [case.case_id]  # common words still search
    assert room.found(cat.search("lobe -trapping")) == [case.case_id]
    for hostile in ("a:* & | ! ( ) <-> ' \\ %s ?", "'; DROP TABLE catalogue_cases; --", ":*"):
        cat.search(hostile)  # user syntax never reaches FTS5 or tsquery: no error
    assert cat.search("").total == 2

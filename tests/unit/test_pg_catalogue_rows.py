"""Concurrency per row on PostgreSQL (issue 27): catalogue edits of different cases run
side by side; edits of the same case take turns and lose nothing. No global lock."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select, text

from archive.catalogue import Catalogue
from tests.unit.test_catalogue import NOW, fake_scan, study

WAIT = 120  # seconds: generous, the machine may be loaded; conditions end it early


def _waiting_on_a_lock(conn, app_pids: set[int]) -> bool:
    rows = conn.execute(
        text("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    ).fetchall()
    return any(r[0] in app_pids for r in rows)


def test_different_cases_proceed_and_the_same_case_serialises(pg):
    first, second, third = (
        Catalogue(pg.connect("rows"), "NSR", scanner=fake_scan) for _ in range(3)
    )
    one = first.upsert_from_study(study(1), "orthanc-1", NOW).case_id
    two = first.upsert_from_study(study(2), "orthanc-2", NOW).case_id
    third_pid = third.repo.conn.execute(select(func.pg_backend_pid())).fetchone()[0]
    other_done, same_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run(catalogue, case_id, title, done):
        try:
            catalogue.edit(case_id, {"title": title}, "trainer2")
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        done.set()

    with first.repo.transaction():
        held = first.repo.get_case(one)  # read for update: case one is locked
        other = threading.Thread(target=run, args=(second, two, "Other case", other_done))
        other.start()
        assert other_done.wait(WAIT), "an edit of another case waited for this transaction"
        same = threading.Thread(target=run, args=(third, one, "Second title", same_done))
        same.start()
        deadline = time.monotonic() + WAIT
        while not _waiting_on_a_lock(first.repo.conn, {third_pid}):
            assert not same_done.is_set(), "an edit of the locked case did not wait for it"
            assert time.monotonic() < deadline, "the edit of the same case never queued"
            time.sleep(0.05)
        first.repo.update_case(held.case_id, {"title": "First title"})
    assert same_done.wait(WAIT)
    other.join()
    same.join()
    assert errors == []
    assert first.get(one).title == "Second title"  # applied after the first, not lost
    assert first.get(two).title == "Other case"


def test_two_nodes_adding_the_same_study_make_one_case(pg):
    """The same study catalogued by two nodes at once: one case, one number."""
    catalogues = [Catalogue(pg.connect("same-study"), "NSR", scanner=fake_scan) for _ in range(4)]
    start = threading.Barrier(len(catalogues))
    results: list[str] = []
    errors: list[BaseException] = []

    def add(catalogue):
        start.wait(WAIT)
        try:
            results.append(catalogue.upsert_from_study(study(9), "orthanc-9", NOW).case_id)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(c,)) for c in catalogues]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert errors == []
    assert set(results) == {"NSR-2026-00001"}
    assert catalogues[0].search("").total == 1

"""The same room tests again, with every `connect` on PostgreSQL (see conftest.py)."""

import functools
import sqlite3

import pytest

from tests.unit import test_governance_optout as room
from tests.unit.conftest import run_on_postgres
from tests.unit.test_governance_optout import *  # noqa: F403 - the same tests, collected here too


@pytest.fixture(autouse=True)
def _on_postgres(monkeypatch, pg):
    run_on_postgres(monkeypatch, pg, room)


# Known gap, left to the governance room (archive/governance/optout.py, `exposures`): its
# two reports GROUP BY e.id / q.id and select columns of other joined tables (r.id,
# r.organisation, r.contact / a.approver), which SQLite allows and PostgreSQL refuses.
# Adding those columns to GROUP BY gives the same rows on both. Strict: once fixed, this
# xfail fails and should be removed.
@pytest.mark.xfail(strict=True, raises=sqlite3.OperationalError, reason="optout GROUP BY")
@functools.wraps(room.test_exposures_lists_shares_exports_and_workstations)
def test_exposures_lists_shares_exports_and_workstations(*args, **kwargs):
    room.test_exposures_lists_shares_exports_and_workstations(*args, **kwargs)

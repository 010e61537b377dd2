"""The same room tests again, with every `connect` on PostgreSQL (see conftest.py)."""

import pytest

from tests.unit import test_governance_optout as room
from tests.unit.conftest import run_on_postgres
from tests.unit.test_governance_optout import *  # noqa: F403 - the same tests, collected here too


@pytest.fixture(autouse=True)
def _on_postgres(monkeypatch, pg):
    run_on_postgres(monkeypatch, pg, room)

"""The same room tests again, with every `connect` on PostgreSQL (see conftest.py)."""

import pytest

from tests.unit import test_vault_ledger as room
from tests.unit.conftest import run_on_postgres
from tests.unit.test_vault_ledger import *  # noqa: F403 - the same tests, collected here too


@pytest.fixture(autouse=True)
def _on_postgres(monkeypatch, pg):
    run_on_postgres(monkeypatch, pg, room)

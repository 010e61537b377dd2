"""The catalogue use cases again, with every `connect` on PostgreSQL (see conftest.py)."""

import pytest

from tests.unit import test_catalogue_usecases as usecases_module
from tests.unit.conftest import run_on_postgres
from tests.unit.test_catalogue_usecases import *  # noqa: F403 - the same tests, collected here too


@pytest.fixture(autouse=True)
def _on_postgres(monkeypatch, pg):
    run_on_postgres(monkeypatch, pg, usecases_module)

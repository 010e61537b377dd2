"""The viewer's access and the teaching modes again, on PostgreSQL (see conftest.py)."""

import pytest

from tests.unit import test_dicomweb as dicomweb_module
from tests.unit.conftest import run_on_postgres
from tests.unit.test_dicomweb import *  # noqa: F403 - the same tests, collected here too


@pytest.fixture(autouse=True)
def _on_postgres(monkeypatch, pg):
    run_on_postgres(monkeypatch, pg, dicomweb_module)

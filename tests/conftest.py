"""Fixtures shared by the whole suite: real archives started through the real CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import RunningArchive, new_archive


@pytest.fixture
def archive_home(tmp_path: Path) -> RunningArchive:
    """A fresh, not yet started archive home on free ports."""
    return new_archive(tmp_path / "home")


@pytest.fixture
def running_archive(archive_home: RunningArchive) -> Iterator[RunningArchive]:
    """A real Orthanc with the plugin, stopped after the test even when it fails."""
    archive_home.start()
    try:
        yield archive_home
    finally:
        archive_home.stop()

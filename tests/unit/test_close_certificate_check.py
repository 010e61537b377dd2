"""`archive close certificate` on a damaged export: one clear error, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.cli.close import CERT_JSON, PUBLIC_KEY_FILE, check_certificate
from archive.errors import ArchiveError


@pytest.mark.parametrize(
    "certificate", ["{}", '{"certificate": {"a": 1}}', "[]", '{"certificate": 1, "sha256": 2}']
)
def test_a_damaged_certificate_export_is_one_archive_error(tmp_path: Path, certificate) -> None:
    (tmp_path / CERT_JSON).write_text(certificate)
    (tmp_path / PUBLIC_KEY_FILE).write_text("00" * 32)
    with pytest.raises(ArchiveError, match="incomplete or damaged|hash does not match"):
        check_certificate(tmp_path)


def test_a_missing_export_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="archive close wipe"):
        check_certificate(tmp_path)

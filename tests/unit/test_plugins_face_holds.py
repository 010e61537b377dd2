"""The face hold at the REST edge (issue 24): exports and shares of limited-access cases
whose series cover a face are refused with the reason and the next step; publication
cases and cases whose flag a reviewer decided pass."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from archive import db
from archive.ingest import flags
from archive.paths import POLICIES_DIR
from tests.fake_orthanc import FakeOrthanc


@pytest.fixture
def check(monkeypatch):
    monkeypatch.setitem(sys.modules, "orthanc", FakeOrthanc())
    from plugins.face_holds import check_face_holds
    from plugins.rest import HttpError

    return check_face_holds, HttpError


def test_face_flag_holds_limited_access_exports_and_shares(check, tmp_path):
    check_face_holds, HttpError = check
    conn = db.connect(tmp_path / "a.db")
    flags.record_flags(conn, "2.25.9", "2.25.9.1", [flags.FACE_SURFACE_FLAG])
    services = SimpleNamespace(config=SimpleNamespace(policies_dir=POLICIES_DIR), db=lambda: conn)
    studies = {"NSR-1": "2.25.9", "NSR-2": "2.25.8"}
    catalogue = SimpleNamespace(get=lambda c: SimpleNamespace(study_uid=studies[c]))
    for use in ("export", "share"):
        with pytest.raises(HttpError) as refused:
            check_face_holds(services, catalogue, {"NSR-1": "limited-access"}, use)
        assert refused.value.status == 409 and "NSR-1" in refused.value.message
        assert "publication" in refused.value.next
    check_face_holds(services, catalogue, {"NSR-1": "publication"}, "export")
    check_face_holds(services, catalogue, {"NSR-2": "limited-access"}, "share")
    flags.decide_flag(conn, "2.25.9", flags.FACE_SURFACE_FLAG, "pat", "checked: defaced copy")
    check_face_holds(services, catalogue, {"NSR-1": "limited-access"}, "export")

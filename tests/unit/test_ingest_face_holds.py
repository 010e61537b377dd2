"""The face hold governance calls (issue 24): exports and shares of limited-access cases
whose series cover a face are refused with the reason and the next step; publication
cases and cases whose flag a reviewer decided pass."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from archive import db
from archive.core import Refused
from archive.ingest import flags
from archive.paths import POLICIES_DIR


def test_face_flag_holds_limited_access_exports_and_shares(tmp_path):
    conn = db.connect(tmp_path / "a.db")
    flags.record_flags(conn, "2.25.9", "2.25.9.1", [flags.FACE_SURFACE_FLAG])
    ports = SimpleNamespace(policies_dir=POLICIES_DIR, db=conn)

    def case(study: str, level: str = "limited-access"):
        return SimpleNamespace(study_uid=study, level=level)

    for use, action in (("export", "removal.request"), ("share", "share.propose")):
        with pytest.raises(Refused) as refused:
            flags.refuse_face_holds(ports, action, {"NSR-1": case("2.25.9")}, use)
        refusal = refused.value.refusal
        assert refusal.code == "conflict" and "NSR-1" in refusal.reason and use in refusal.reason
        assert "publication" in refusal.next
    flags.refuse_face_holds(
        ports, "share.propose", {"NSR-1": case("2.25.9", "publication")}, "share"
    )
    flags.refuse_face_holds(ports, "removal.request", {"NSR-2": case("2.25.8")}, "export")
    flags.decide_flag(conn, "2.25.9", flags.FACE_SURFACE_FLAG, "pat", "checked: defaced copy")
    flags.refuse_face_holds(ports, "removal.request", {"NSR-1": case("2.25.9")}, "export")

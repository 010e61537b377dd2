"""The HTTP filter's own logic, with tests/fake_orthanc.py for the `orthanc` module it
takes: it never raises, and any internal error denies the request with one log line."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from archive.access import load_route_policy
from archive.paths import POLICIES_DIR
from tests.fake_orthanc import FakeOrthanc


@pytest.fixture
def fake_orthanc() -> FakeOrthanc:
    return FakeOrthanc()


class _Services:
    def __init__(self, store, fail_audit: bool = False) -> None:
        self.route_policy = load_route_policy(POLICIES_DIR)
        self.store = store
        self.records: list = []
        self.fail_audit = fail_audit

    def access_store(self):
        if self.store is None:
            raise RuntimeError("database is locked")
        return self.store

    def record(self, event) -> int:
        if self.fail_audit:
            from archive.audit import AuditError

            raise AuditError("cannot write the audit log")
        self.records.append(event)
        return 0


def _store(tmp_path: Path):
    from datetime import UTC, datetime

    from argon2 import PasswordHasher

    from archive import db
    from archive.access import AccessStore

    store = AccessStore(
        db.connect(tmp_path / "a.db"),
        hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    now = datetime.now(UTC)
    store.add_user("pat", "a-long-password-1", ["personnel"], now, by="t")
    return store


BASIC = {"authorization": "Basic " + base64.b64encode(b"pat:a-long-password-1").decode()}


def test_allowed_denied_and_audited(fake_orthanc, tmp_path: Path) -> None:
    from plugins import http_filter

    services = _Services(_store(tmp_path))
    check = http_filter.make_filter(fake_orthanc, services)
    assert check("/system", method=1, ip="10.0.0.9", headers=BASIC, get={}) is True
    assert check("/instances/x/file", method=1, ip="10.0.0.9", headers=BASIC, get={}) is False
    assert check("/system", method=1, ip="10.0.0.9", headers={}, get={}) is False
    assert check("/teaching/health", method=1, ip="10.0.0.9", headers={}, get={}) is True
    outcomes = [(e.action, e.outcome, e.actor) for e in services.records]
    assert outcomes == [
        ("access.decision", "success", "pat"),
        ("access.decision", "denied", "pat"),
        ("access.decision", "denied", "anonymous"),
        ("access.decision", "success", "anonymous"),
    ]
    assert all(e.source == "10.0.0.9" for e in services.records)


@pytest.mark.parametrize("failure", ["store", "audit", "headers"])
def test_internal_errors_deny_with_one_log_line(fake_orthanc, tmp_path: Path, failure: str) -> None:
    from plugins import http_filter

    services = _Services(None if failure == "store" else _store(tmp_path), failure == "audit")
    check = http_filter.make_filter(fake_orthanc, services)
    headers = {"authorization": object()} if failure == "headers" else BASIC
    assert check("/system", method=1, ip="10.0.0.9", headers=headers, get={}) is False
    assert len(fake_orthanc.errors) == 1
    assert "request denied" in fake_orthanc.errors[0]
    assert "\n" not in fake_orthanc.errors[0]

"""The spend hook of RemovalRequests.authorise_export (issue 14, crash mid-export).

The plugin writes its durable audit record of a download inside the spending
transaction; these tests pin the two properties it relies on: the hook runs before the
spend is visible to anyone else, and a hook that fails leaves nothing spent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from archive.db import connect
from archive.governance.policy import load_policy
from archive.governance.removals.records import ExportTicket, RemovalRequests

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
LEVELS = {"NSR-0001": "publication"}


class AuditDown(Exception):
    pass


@pytest.fixture
def setup(tmp_path):
    path = tmp_path / "archive.db"
    reg = RemovalRequests(connect(path), load_policy())
    req = reg.create(
        ["NSR-0001"], "teaching_materials", "teaching day", "Dr Trainer", ["trainer"],
        case_levels=LEVELS, now=T0,
    )  # fmt: skip
    reg.approve(
        req.id, "Dr Head", ["head_of_school"], "Approved for the teaching day.",
        max_downloads=2, now=T0 + timedelta(hours=1),
    )  # fmt: skip
    return reg, req.id, path


def test_hook_sees_the_ticket_before_the_spend_is_visible(setup) -> None:
    reg, rid, path = setup
    other = RemovalRequests(connect(path), reg.policy)
    seen: list[tuple[ExportTicket, int, list]] = []

    def hook(ticket: ExportTicket) -> None:
        outside = other.get(rid).approval
        assert outside is not None
        seen.append((ticket, outside.downloads_used, other.downloads(rid)))

    ticket = reg.authorise_export(rid, T0 + timedelta(hours=2), on_spend=hook)
    assert len(seen) == 1
    hooked, used_outside, rows_outside = seen[0]
    assert hooked == ticket and ticket.download_number == 1
    assert (used_outside, rows_outside) == (0, [])  # not committed while the hook ran
    after = other.get(rid)
    assert after.approval is not None and after.approval.downloads_used == 1
    assert [d["download_number"] for d in other.downloads(rid)] == [1]


def test_failing_hook_spends_nothing(setup) -> None:
    reg, rid, _ = setup

    def hook(ticket: ExportTicket) -> None:
        raise AuditDown("the audit log cannot be written")

    with pytest.raises(AuditDown):
        reg.authorise_export(rid, T0 + timedelta(hours=2), on_spend=hook)
    item = reg.get(rid)
    assert item.status == "approved"
    assert item.approval is not None and item.approval.downloads_used == 0
    assert reg.downloads(rid) == []
    # The next attempt gets download 1, as if the failed one never happened.
    numbers: list[int] = []
    reg.authorise_export(
        rid, T0 + timedelta(hours=3), on_spend=lambda t: numbers.append(t.download_number)
    )
    assert numbers == [1]
    assert [d["download_number"] for d in reg.downloads(rid)] == [1]

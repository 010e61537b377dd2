"""Each governance workflow owns its tables (issue 21): no module reads another's.

A workflow that needs another's facts asks its function (optout asks sharing which
shares carried a case; sharing asks optout which cases were withdrawn). This test reads
the source: a table name may appear only in its owner's files (and in the shared schema
history, archive/governance/_store.py).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWNERS = {
    "governance_removal_": ("archive/governance/removals/",),
    "governance_share_": ("archive/governance/sharing/",),
    "governance_undertakings": ("archive/governance/sharing/",),
    "governance_recipients": ("archive/governance/sharing/",),
    "governance_board_": ("archive/governance/board.py",),
    "governance_closure_": ("archive/governance/closure/",),
    "governance_wipe_": ("archive/governance/closure/",),
    "governance_optout": ("archive/governance/optout/",),
    "governance_withdraw": ("archive/governance/optout/",),
    "governance_pulls": ("archive/governance/pulls.py",),
    "governance_workstation_wipes": ("archive/governance/pulls.py",),
    # Retired by the one workstation registry (issue 21): the access room's registry
    # adopts the places of older homes from it once, and nothing else reads it.
    "governance_workstations": ("archive/access/nodes.py",),
}
SHARED_SCHEMA = "archive/governance/_store.py"
TABLE = re.compile(r"\b(governance_[a-z_]+)\b")


def _owner(table: str) -> tuple[str, ...] | None:
    best = max((p for p in OWNERS if table.startswith(p)), key=len, default=None)
    return OWNERS[best] if best else None


def _sources():
    for base in ("archive", "plugins"):
        for path in sorted((ROOT / base).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def test_every_governance_table_is_read_only_by_its_workflow():
    trespass = []
    for rel, text in _sources():
        if rel == SHARED_SCHEMA:
            continue
        for table in set(TABLE.findall(text)):
            owner = _owner(table)
            if owner is None:
                continue  # not a table (governance_policy, governance_routes...)
            if not any(rel.startswith(o) for o in owner):
                trespass.append(f"{rel} reads {table} (owned by {', '.join(owner)})")
    assert trespass == []


def test_every_table_in_the_schema_has_an_owner():
    schema = (ROOT / SHARED_SCHEMA).read_text()
    tables = set(re.findall(r"CREATE TABLE (governance_[a-z_]+)", schema))
    assert tables and all(_owner(t) for t in tables), sorted(t for t in tables if not _owner(t))

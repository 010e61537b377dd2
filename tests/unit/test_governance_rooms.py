"""Each governance workflow owns its tables (issue 21): no module reads another's.

A workflow that needs another's facts asks its function (optout asks sharing which
shares carried a case; sharing asks optout which cases were withdrawn). This test reads
the source: a table name may appear only in its owner's files (and in the shared schema,
archive/governance/_store.py and tables.py), and the Core declaration of a table
(archive/governance/tables.py) is used only by its owner's files.
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
DECLARATIONS = "archive/governance/tables.py"
# A declared table used: t.removal_cases, tables.recipients, or imported by name.
USES = re.compile(
    r"\b(?:t|tables)\.([a-z_]+)\b"
    r"|from archive\.governance\.tables import \(?([a-z_, \n]+(?: as [a-z_]+)?)"
)
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
        if rel in (SHARED_SCHEMA, DECLARATIONS):
            continue
        for table in set(TABLE.findall(text)):
            owner = _owner(table)
            if owner is None:
                continue  # not a table (governance_policy, governance_routes...)
            if not any(rel.startswith(o) for o in owner):
                trespass.append(f"{rel} reads {table} (owned by {', '.join(owner)})")
    assert trespass == []


def _declared() -> dict[str, str]:
    from sqlalchemy import Table

    from archive.governance import tables

    return {name: t.name for name, t in vars(tables).items() if isinstance(t, Table)}


def test_every_declared_table_is_used_only_by_its_workflow():
    declared = _declared()
    trespass = []
    for rel, text in _sources():
        if not rel.startswith("archive/governance/") or rel in (SHARED_SCHEMA, DECLARATIONS):
            continue
        used = set()
        for attribute, imported in USES.findall(text):
            if attribute:
                used.add(attribute)
            for part in imported.replace("\n", " ").split(","):
                name = part.strip().split(" as ")[0].strip()
                if name:
                    used.add(name)
        for name in used & set(declared):
            owner = _owner(declared[name])
            if owner and not any(rel.startswith(o) for o in owner):
                trespass.append(f"{rel} uses {declared[name]} (owned by {', '.join(owner)})")
    assert trespass == []


def test_scanner_sees_declared_tables_used():
    found = USES.findall("x = t.removal_cases\nfrom archive.governance.tables import optout, pulls")
    assert ("removal_cases", "") in found and any("optout" in i for _, i in found)


def test_every_table_in_the_schema_has_an_owner():
    tables = set(_declared().values())
    assert tables and all(_owner(t) for t in tables), sorted(t for t in tables if not _owner(t))

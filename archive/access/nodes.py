"""DICOM nodes (table access_dicom_nodes) and the one registry of suite workstations.

A source is a node that may C-STORE; a suite workstation is a node that may query and
retrieve and has a place in the suite (`location`), which closure and withdrawals need
to know which physical machine holds pulled cases. The place used to be kept apart by
governance (governance_workstations); `Workstations` copies those rows once into the
node's row and is the only register from then on.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import column, delete, insert, select, table, update

from archive.access.accounts import AccessError, _iso
from archive.access.schema import AccessDb
from archive.access.tables import dicom_nodes
from archive.db.errors import IntegrityError
from archive.errors import ArchiveError

# The places governance kept before the registry was one (read once, never written).
_RETIRED_PLACES = table(
    "governance_workstations",
    column("name"),
    column("location"),
    column("added_by"),
    column("added_at"),
)

_AET = re.compile(r"^[\x21-\x5b\x5d-\x7e][\x20-\x5b\x5d-\x7e]{0,15}$")


@dataclass(frozen=True)
class DicomNode:
    name: str
    aet: str
    host: str
    port: int
    may_store: bool
    may_query: bool


def normalise_host(host: str) -> str:
    """Compare hosts as Orthanc reports them: IPv4-mapped IPv6 becomes plain IPv4."""
    host = host.strip().lower()
    return host[7:] if host.startswith("::ffff:") and "." in host else host


class DicomNodes:
    """Registered DICOM peers, by AE title and host."""

    def __init__(self, db: AccessDb | Any) -> None:
        self.db = db if isinstance(db, AccessDb) else AccessDb(db)

    def bind(self, db: AccessDb) -> DicomNodes:
        return DicomNodes(db)

    def add_dicom_node(
        self,
        name: str,
        aet: str,
        host: str,
        port: int,
        may_store: bool = False,
        may_query: bool = False,
    ) -> DicomNode:
        """Register a source (may_store) or suite workstation (may_query) by AE title + host."""
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise AccessError("node names are letters, digits, '-' and '_', e.g. ws-01.")
        if not _AET.match(aet) or aet != aet.strip():
            raise AccessError(f"AE title {aet!r} must be 1-16 printable ASCII, no backslash.")
        if not host.strip():
            raise AccessError("give the node's host (IP address or name).")
        if not 1 <= port <= 65535:
            raise AccessError("port must be 1 to 65535.")
        try:
            with self.db.tx() as c:
                c.execute(
                    insert(dicom_nodes).values(
                        name=name,
                        aet=aet,
                        host=normalise_host(host),
                        port=port,
                        may_store=int(may_store),
                        may_query=int(may_query),
                    )
                )
        except IntegrityError:
            raise AccessError(
                f"a node named {name} or with AE {aet} at {host} is already registered."
            ) from None
        return next(n for n in self.list_dicom_nodes() if n.name == name)

    def list_dicom_nodes(self) -> list[DicomNode]:
        return [
            DicomNode(
                r["name"],
                r["aet"],
                r["host"],
                r["port"],
                bool(r["may_store"]),
                bool(r["may_query"]),
            )
            for r in self.db.conn.execute(select(dicom_nodes).order_by(dicom_nodes.c.name))
        ]

    def remove_dicom_node(self, name: str) -> None:
        with self.db.tx() as c:
            gone = c.execute(delete(dicom_nodes).where(dicom_nodes.c.name == name))
            if gone.rowcount == 0:
                raise AccessError(f"no DICOM node named {name!r}.")


@dataclass(frozen=True)
class Workstation:
    """A suite workstation: a DICOM node that may query and retrieve, and its place."""

    name: str
    aet: str
    host: str
    port: int
    location: str
    added_by: str
    added_at: str


def _place(text: object, what: str, max_len: int) -> str:
    if not isinstance(text, str) or not text.strip():
        raise AccessError(f"{what} is required and must not be blank.")
    text = text.strip()
    if len(text) > max_len:
        raise AccessError(f"{what} is too long ({len(text)} > {max_len} characters).")
    return text


class Workstations:
    """The one registry of suite workstations (rows of access_dicom_nodes that may query
    and have a location). DICOM, pulls, the web and closure all read it here."""

    def __init__(self, db: AccessDb | Any) -> None:
        self.db = db if isinstance(db, AccessDb) else AccessDb(db)
        self.nodes = DicomNodes(self.db)
        _adopt_governance_places(self.db)

    def add(
        self, name: str, aet: str, host: str, port: int, location: str, by: str, now: datetime
    ) -> Workstation:
        """Register a workstation: its node (query/retrieve, never C-STORE) and place."""
        where = _place(location, "location", 200)
        who = _place(by, "added_by", 200)
        _place(name, "workstation name", 64)
        self.nodes.add_dicom_node(name, aet, host, port, may_store=False, may_query=True)
        with self.db.tx() as c:
            c.execute(
                update(dicom_nodes)
                .where(dicom_nodes.c.name == name)
                .values(location=where, added_by=who, added_at=_iso(now))
            )
        return self.get(name)

    def _rows(self, name: str | None = None) -> list[Workstation]:
        statement = (
            select(dicom_nodes)
            .where(dicom_nodes.c.may_query == 1, dicom_nodes.c.location.is_not(None))
            .order_by(dicom_nodes.c.name)
        )
        if name is not None:
            statement = statement.where(dicom_nodes.c.name == name)
        return [
            Workstation(
                r["name"],
                r["aet"],
                r["host"],
                r["port"],
                r["location"],
                r["added_by"] or "",
                r["added_at"] or "",
            )  # fmt: skip
            for r in self.db.conn.execute(statement)
        ]

    def get(self, name: str) -> Workstation:
        rows = self._rows(name)
        if not rows:
            raise AccessError(
                f"no workstation named {name!r}; list them with `archive workstations list`."
            )
        return rows[0]

    def exists(self, name: str) -> bool:
        return bool(self._rows(name))

    def all(self) -> dict[str, Workstation]:
        return {w.name: w for w in self._rows()}

    def remove(self, name: str) -> None:
        """Unregister a workstation (its node goes with it)."""
        self.get(name)
        self.nodes.remove_dicom_node(name)


def workstations(conn: Any) -> Workstations:
    """The workstation registry on an archive DB connection (for other rooms to read)."""
    return Workstations(conn)


def _adopt_governance_places(db: AccessDb) -> None:
    """Copy places from the old governance_workstations table once, where a query node
    has none yet (homes made before the registry was one). Idempotent and cheap."""
    if getattr(db, "places_adopted", False):
        return
    try:
        rows = db.conn.execute(select(*_RETIRED_PLACES.c)).fetchall()
    except (sqlite3.Error, ArchiveError):  # no such table: nothing to adopt
        rows = []
    placeless = set(
        db.conn.execute(
            select(dicom_nodes.c.name).where(
                dicom_nodes.c.may_query == 1, dicom_nodes.c.location.is_(None)
            )
        ).scalars()
    )
    todo = [tuple(r) for r in rows if r[0] in placeless]
    if todo:
        with db.tx() as c:
            for name, location, added_by, added_at in todo:
                c.execute(
                    update(dicom_nodes)
                    .where(
                        dicom_nodes.c.name == name,
                        dicom_nodes.c.may_query == 1,
                        dicom_nodes.c.location.is_(None),
                    )
                    .values(location=location, added_by=added_by, added_at=added_at)
                )
    db.places_adopted = True

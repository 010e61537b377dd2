"""Suite workstations, as governance reads them: from the one registry in the access room.

A workstation is a DICOM node that may query (AE title, host, port) with its place in
the suite, kept together in archive.access.nodes.Workstations since issue 21 (the places
of older homes are copied there once from the retired governance table). Closure and
withdrawals read which physical machines are registered here; registering and removing
is `archive workstations add|remove` (archive.access.nodes).
"""

from __future__ import annotations

from typing import Any

from archive.access.accounts import AccessError
from archive.access.nodes import Workstation, workstations
from archive.governance.errors import NotFoundError

WorkstationPlace = Workstation  # the name governance used


class Workstations:
    """Read-only view of the workstation registry for governance."""

    def __init__(self, conn: Any) -> None:
        self._registry = workstations(conn)

    def get(self, name: str) -> WorkstationPlace:
        try:
            return self._registry.get(name)
        except AccessError as exc:
            raise NotFoundError(str(exc)) from None

    def exists(self, name: str) -> bool:
        return self._registry.exists(name)

    def all(self) -> dict[str, WorkstationPlace]:
        return self._registry.all()

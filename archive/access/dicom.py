"""DICOM admission: registered sources may store; registered suite workstations may query
and retrieve (and receive a C-MOVE); everything else is refused (and audited by the caller).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from archive.access.decide import Decision
from archive.access.nodes import DicomNode, normalise_host

KINDS = ("store", "find", "move", "get")


class _NodeSource(Protocol):
    def list_dicom_nodes(self) -> list[DicomNode]: ...


def dicom_decision(
    nodes: _NodeSource | Iterable[DicomNode],
    kind: str,
    aet: str,
    host: str,
    move_destination: str | None = None,
) -> Decision:
    """May the peer (calling AE title at host) do `kind`? Both AE title and host must match.

    For a C-MOVE, `move_destination` (the AE the images would go to) must also be a
    registered workstation, so a registered AE cannot redirect images elsewhere.
    """
    if kind not in KINDS:
        return Decision(False, f"unknown DICOM operation {kind!r}")
    listing = nodes.list_dicom_nodes() if hasattr(nodes, "list_dicom_nodes") else list(nodes)
    aet = aet.strip()
    host = normalise_host(host)
    same_aet = [n for n in listing if n.aet == aet]
    if not same_aet:
        return Decision(False, f"calling AE title is not registered ({kind})")
    node = next((n for n in same_aet if n.host == host), None)
    if node is None:
        return Decision(False, f"AE title registered for another host ({kind})")
    if kind == "store":
        if node.may_store:
            return Decision(True, "registered source", f"node:{node.name}")
        return Decision(False, "node is not a registered source (may not store)")
    if not node.may_query:
        return Decision(False, "node is not a registered workstation (may not query/retrieve)")
    if kind == "move" and move_destination is not None:
        dest = move_destination.strip()
        if not any(n.aet == dest and n.may_query for n in listing):
            return Decision(False, "C-MOVE destination is not a registered workstation")
    return Decision(True, "registered workstation", f"node:{node.name}")

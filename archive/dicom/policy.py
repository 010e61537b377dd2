"""The DICOM front's policy (policies/access/dicom.toml) and its retrieve rule."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from archive.access.decide import Decision
from archive.access.nodes import DicomNode
from archive.dicom.guard import ScanLimits
from archive.errors import ConfigError

POLICY_FILE = Path("access") / "dicom.toml"


@dataclass(frozen=True)
class FrontPolicy:
    max_associations: int = 16
    max_pdu_bytes: int = 131072
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 120.0
    scan: ScanLimits = ScanLimits()
    max_message_bytes: int = 1 << 30
    move_to_other_workstations: bool = False
    version: int = 1


def _number(section: dict, key: str, default: int | float, low: int, high: int) -> int | float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(
            f"{POLICY_FILE}: {key} must be a number from {low} to {high}; fix the policy file."
        )
    return value


def load_front_policy(policies_dir: Path | str) -> FrontPolicy:
    """Read the policy; a missing or malformed file stops the front (fail closed)."""
    path = Path(policies_dir) / POLICY_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"cannot read the DICOM front policy {path} ({exc}); restore it."
        ) from None
    assoc, store, retrieve = (raw.get(k, {}) for k in ("association", "store", "retrieve"))
    others = retrieve.get("move_to_other_workstations", False)
    if not isinstance(others, bool):
        raise ConfigError(f"{POLICY_FILE}: move_to_other_workstations must be true or false.")
    return FrontPolicy(
        max_associations=int(_number(assoc, "max_associations", 16, 1, 256)),
        max_pdu_bytes=int(_number(assoc, "max_pdu_bytes", 131072, 4096, 1 << 24)),
        acse_timeout=float(_number(assoc, "acse_timeout_seconds", 30, 1, 3600)),
        dimse_timeout=float(_number(assoc, "dimse_timeout_seconds", 60, 1, 3600)),
        network_timeout=float(_number(assoc, "network_timeout_seconds", 120, 1, 86400)),
        scan=ScanLimits(
            max_depth=int(_number(store, "max_sequence_depth", 32, 1, 1000)),
            max_inflated_bytes=int(_number(store, "max_inflated_bytes", 1 << 30, 1024, 1 << 33)),
            max_elements=int(_number(store, "max_elements", 2_000_000, 100, 100_000_000)),
        ),
        max_message_bytes=int(_number(store, "max_message_bytes", 1 << 30, 4096, 1 << 36)),
        move_to_other_workstations=others,
        version=int(_number(raw, "version", 1, 1, 1 << 30)),
    )


def association_decision(nodes: Iterable[DicomNode], aet: str, host: str) -> Decision:
    """May this peer associate at all? Its AE title must be registered for its host."""
    from archive.access.nodes import normalise_host

    aet, host = aet.strip(), normalise_host(host)
    same = [n for n in nodes if n.aet == aet]
    if not same:
        return Decision(False, "calling AE title is not registered (association)")
    node = next((n for n in same if n.host == host), None)
    if node is None:
        return Decision(False, "AE title registered for another host (association)")
    if not node.may_store and not node.may_query:  # e.g. a recipient's node: send-only
        return Decision(False, "node may not call the archive (association)")
    return Decision(True, "registered node", f"node:{node.name}")


def retrieve_decision(
    policy: FrontPolicy,
    nodes: Iterable[DicomNode],
    requester: DicomNode,
    destination_aet: str,
    workstations: set[str],
) -> tuple[Decision, DicomNode | None]:
    """Where may a pull (C-MOVE) from `requester` go? (decision, destination node).

    The requester must be a registered suite workstation; the destination must be a
    registered suite workstation (a query node in the workstation register, never a
    source) and the requester itself unless the policy allows other workstations.
    Third-party recipients are not DICOM nodes of the access room: never a destination."""
    if not requester.may_query or requester.may_store or requester.name not in workstations:
        return Decision(False, "the requester is not a registered suite workstation"), None
    dest = destination_aet.strip()
    candidates = [n for n in nodes if n.aet == dest]
    if not candidates:
        return Decision(False, "C-MOVE destination is not a registered workstation"), None
    node = next((n for n in candidates if n.name == requester.name), candidates[0])
    if node.may_store or not node.may_query or node.name not in workstations:
        return Decision(False, "C-MOVE destination is not a registered workstation"), None
    if node.name != requester.name and not policy.move_to_other_workstations:
        return Decision(False, "C-MOVE destination must be the requesting workstation"), None
    return Decision(True, "pull to a registered workstation", f"node:{node.name}"), node

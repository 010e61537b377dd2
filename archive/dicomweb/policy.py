"""policies/access/viewer.toml as a value: suite networks, audit window, quiz redaction."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path

from archive.errors import ArchiveError

VIEWER_FILE = Path("access") / "viewer.toml"
# Routes whose allowed requests the HTTP filter does not record one by one: the viewer's
# files (no data) and its DICOMweb, which audits itself once per study opened per web
# session (archive/dicomweb/service.py). Refusals by the filter are still recorded.
SELF_AUDITED = ("/teaching/ui/viewer/", "/teaching/ui/dicomweb/")


class ViewerPolicyError(ArchiveError):
    """viewer.toml is missing or cannot be understood (the viewer then refuses all)."""


@dataclass(frozen=True)
class ViewerPolicy:
    version: int
    suite_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    audit_window_seconds: int
    study_description: str
    series_description: str
    replace: frozenset[int]  # tags, as ints
    remove: frozenset[int]

    def from_suite(self, address: str) -> bool:
        """True if the client address lies in one of the suite's networks."""
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.suite_networks if net.version == ip.version)


def _tags(names: object, where: str) -> frozenset[int]:
    from pydicom.datadict import tag_for_keyword

    if not isinstance(names, list):
        raise ViewerPolicyError(f"{where} must be a list of DICOM keywords.")
    tags = set()
    for name in names:
        tag = tag_for_keyword(str(name))
        if tag is None:
            raise ViewerPolicyError(f"{where}: {name!r} is not a DICOM keyword.")
        tags.add(int(tag))
    return frozenset(tags)


def parse_viewer_policy(data: dict, source: str = "viewer.toml") -> ViewerPolicy:
    if data.get("version") != 1:
        raise ViewerPolicyError(f"{source}: version must be 1.")
    access, quiz = data.get("access") or {}, data.get("quiz") or {}
    try:
        networks = tuple(
            ipaddress.ip_network(str(n), strict=False) for n in access["suite_networks"]
        )
        window = int(access.get("audit_window_minutes", 10)) * 60
    except (KeyError, TypeError, ValueError) as exc:
        raise ViewerPolicyError(f"{source}: [access] is not understood ({exc}).") from None
    if window < 0:
        raise ViewerPolicyError(f"{source}: audit_window_minutes must not be negative.")
    return ViewerPolicy(
        version=1,
        suite_networks=networks,
        audit_window_seconds=window,
        study_description=str(quiz.get("study_description", "Unknown case")),
        series_description=str(quiz.get("series_description", "Series")),
        replace=_tags(quiz.get("replace", []), f"{source}: quiz.replace"),
        remove=_tags(quiz.get("remove", []), f"{source}: quiz.remove"),
    )


def load_viewer_policy(policies_dir: Path) -> ViewerPolicy:
    path = Path(policies_dir) / VIEWER_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ViewerPolicyError(f"{path} cannot be read ({exc}); fix it and restart.") from None
    return parse_viewer_policy(data, str(path))

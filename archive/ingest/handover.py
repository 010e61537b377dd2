"""Which of the de-identification engine's quarantine reasons the pixel step takes over.

The engine holds every burnt-in-text candidate by rule (policies/deid/quarantine.toml).
Its `[pixel_step]` table names the rules whose instances the pixel check
(archive.pixels: OCR, masking templates, photograph consent) may decide instead. We
rebuild the engine's exact reason texts for those rules from the loaded rules and hand
an instance over only when EVERY reason is one of them: a header problem, an unknown
rule or a changed reason wording keeps the instance quarantined (fail closed).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from archive.deid import DeidPolicy
from archive.errors import ConfigError

REASON_SEPARATOR = "; "  # how the engine joins its reasons


@dataclass(frozen=True)
class Handover:
    """Exact engine reasons the pixel step may decide; empty: nothing is handed over."""

    reasons: frozenset[str]
    version: str

    def accepts(self, quarantine_reason: str | None) -> bool:
        if not quarantine_reason:
            return False
        parts = quarantine_reason.split(REASON_SEPARATOR)
        return all(part in self.reasons for part in parts)


def _strings(table: dict, key: str, path: Path) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: [pixel_step].{key} must be a list of strings; fix it.")
    return value


def load_handover(policies_dir: Path, deid: DeidPolicy) -> Handover:
    """Read [pixel_step] of policies/deid/quarantine.toml against the engine's rules."""
    path = Path(policies_dir) / "deid" / "quarantine.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read ({type(exc).__name__}); restore it.") from None
    table = data.get("pixel_step")
    if table is None:
        return Handover(frozenset(), str(data.get("version", "")))
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [pixel_step] must be a table; fix it.")
    rules = deid.quarantine
    reasons: set[str] = set()
    for modality in _strings(table, "modalities", path):
        if modality.upper() not in rules.modalities:
            raise ConfigError(f"{path}: [pixel_step] modality {modality} is not a quarantine rule.")
        reasons.add(f"burnt-in text possible (modality {modality.upper()})")
    for uid in _strings(table, "sop_classes", path):
        if uid not in rules.sop_classes:
            raise ConfigError(f"{path}: [pixel_step] SOP class {uid} is not a quarantine rule.")
        reasons.add(f"burnt-in text possible (SOP class {rules.sop_classes[uid]})")
    by_keyword = {kw: values for kw, values in rules.attribute_values.values()}
    for keyword in _strings(table, "attributes", path):
        if keyword not in by_keyword:
            raise ConfigError(f"{path}: [pixel_step] attribute {keyword} is not a quarantine rule.")
        for value in by_keyword[keyword]:
            reasons.add(f"burnt-in text possible ({keyword}={value})")
    present = set(rules.present.values())
    for keyword in _strings(table, "present", path):
        if keyword not in present:
            raise ConfigError(f"{path}: [pixel_step] present {keyword} is not a quarantine rule.")
        reasons.add(f"burnt-in text possible ({keyword} present: secondary or screen capture)")
    return Handover(frozenset(reasons), rules.version)

"""Load policies/deid/ and precompile it into flat lookup tables.

The profile (PS3.15 Table E.1-1), the chosen options and the TCIA private tag knowledge
base are data; this module turns them once into `tag -> (action, VR, is_identity)` so
the engine does one dict lookup per element instead of re-reading the table. Anything
missing, altered or ambiguous raises ConfigError: without a policy nothing is released.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.datadict import DicomDictionary, keyword_for_tag, tag_for_keyword

from archive.errors import ConfigError

# Actions (small ints: the engine compares them in its inner loop).
REMOVE, EMPTY, DUMMY, KEEP, UID, CLEAN, PSEUDO_ID, PSEUDO_NAME, AGE = range(9)
ACTION_NAMES = {
    "X": REMOVE,
    "Z": EMPTY,
    "D": DUMMY,
    "K": KEEP,
    "U": UID,
    "C": CLEAN,
    "PSEUDONYM_ID": PSEUDO_ID,
    "PSEUDONYM_NAME": PSEUDO_NAME,
    "AGE": AGE,
}
# Where the table offers a choice depending on the attribute's Type, we pick the choice
# that keeps the attribute present (so Type 1/2 stay valid) without its value.
_COMBINED = {
    "X/Z": EMPTY,
    "X/D": DUMMY,
    "X/Z/D": DUMMY,
    "Z/D": EMPTY,
    "X/Z/U*": UID,  # keep the reference sequence, map every UID inside it
}
# Options in the order they are applied; a later option wins where two apply.
OPTION_ORDER = (
    "rtnLongFullDatesOpt",
    "rtnLongModifDatesOpt",
    "rtnUIDsOpt",
    "rtnDevIdOpt",
    "rtnInstIdOpt",
    "rtnPatCharsOpt",
    "cleanGraphOpt",
    "cleanStructContOpt",
    "cleanDescOpt",
    "rtnSafePrivOpt",
)
# CID 7050 code meanings (DICOM PS3.16).
CODE_MEANINGS = {
    "113100": "Basic Application Confidentiality Profile",
    "113101": "Clean Pixel Data Option",
    "113102": "Clean Recognizable Visual Features Option",
    "113103": "Clean Graphics Option",
    "113104": "Clean Structured Content Option",
    "113105": "Clean Descriptors Option",
    "113106": "Retain Longitudinal Temporal Information Full Dates Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
    "113109": "Retain Device Identity Option",
    "113110": "Retain UIDs Option",
    "113111": "Retain Safe Private Option",
    "113112": "Retain Institution Identity Option",
}
TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})
# UIDs of these attributes name classes, syntaxes or registries, never an instance.
_CLASS_UID = re.compile(r"(ClassUID|SyntaxUID|CodingSchemeUID|CreatorUID|ClassesInStudy)$")

PrivatePath = tuple  # tuple of int (standard tag) or (group, creator, element byte)


@dataclass(frozen=True)
class QuarantineRules:
    version: str
    modalities: frozenset[str]
    sop_classes: dict[str, str]
    attribute_values: dict[int, tuple[str, frozenset[str]]]  # tag -> (keyword, values)
    present: dict[int, str]  # tag -> keyword


@dataclass(frozen=True)
class DeidPolicy:
    """A loaded, checked and precompiled de-identification policy."""

    version: str
    level: str
    profile_edition: str
    options: frozenset[str]
    actions: dict[int, tuple[int, str, bool]]  # tag -> (action, VR, is_identity)
    private_keep: dict[PrivatePath, str]  # path of a safe private element -> VR
    remove_graphics_groups: bool
    safe_private: bool
    quarantine: QuarantineRules
    offset_days: tuple[int, int]
    adult_years: int
    band_years: int
    cap_years: int
    clean_on_hit: str
    min_name_part: int
    min_identifier: int
    birth_date_tag: int
    dummies: dict[str, str]
    sr_remove_concepts: frozenset[str]
    method_codes: tuple[tuple[str, str], ...]  # (code value, meaning)
    method_text: tuple[str, ...]
    skip_known_in: frozenset[int]
    remove_free_text: frozenset[int] = frozenset()  # C-action text that is removed whole
    sources: dict[str, str] = field(default_factory=dict)  # name -> sha256


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _toml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"De-identification policy file {path} is missing; restore it from git.")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path} is not valid TOML ({exc}); fix it or restore it from git."
        ) from None


def _source(policies: Path, sources: dict, name: str) -> Path:
    entry = sources.get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise ConfigError(f"options.toml [sources].{name} must name a file in {policies}.")
    path = policies / entry["file"]
    if not path.is_file():
        raise ConfigError(f"De-identification source {path} is missing; restore it from git.")
    want = entry.get("sha256")
    if want is not None and _sha256(path) != want:
        raise ConfigError(
            f"{path} does not match the sha256 pinned in options.toml; restore it from git "
            f"or, after review, update [sources] and PROVENANCE.md."
        )
    return path


def _tag(text: str, where: str) -> int:
    if not re.fullmatch(r"[0-9a-fA-F]{8}", text):
        raise ConfigError(f"{where}: {text!r} is not a tag of 8 hex digits.")
    return int(text, 16)


def _compile_profile(
    rows: list, options: frozenset[str]
) -> tuple[dict[int, int], dict[str, int], dict[int, str]]:
    """Effective action per listed tag, actions for the pattern rows, and the tags whose
    action is still a Type-dependent choice (X/Z, X/D...)."""
    actions: dict[int, int] = {}
    patterns: dict[str, int] = {}
    choices: dict[int, str] = {}
    for row in rows:
        basic = row.get("basicProfile")
        ident = row.get("id")
        if not isinstance(basic, str) or not isinstance(ident, str):
            raise ConfigError("The profile table has a row without id or basicProfile.")
        action = ACTION_NAMES.get(basic, _COMBINED.get(basic))
        if action is None:
            raise ConfigError(f"Profile row {ident}: unknown action {basic!r}.")
        overridden = False
        for opt in OPTION_ORDER:
            if opt in options and opt in row and row[opt] in ACTION_NAMES:
                action = ACTION_NAMES[row[opt]]
                overridden = True
        if re.fullmatch(r"[0-9a-f]{8}", ident):
            actions[int(ident, 16)] = action
            if basic in _COMBINED and not overridden:
                choices[int(ident, 16)] = basic
        else:
            patterns[ident] = action
    return actions, patterns, choices


def _sequence_choice(keyword: str, basic: str) -> int:
    """A Type-dependent choice on a sequence: reference sequences keep their items (their
    UIDs are mapped), so the sequence stays valid whatever its Type; any other sequence
    is emptied if Z is allowed, else removed."""
    if keyword.startswith("Referenced") or basic == "X/Z/U*":
        return UID
    return EMPTY if "Z" in basic else REMOVE


def _default_action(keyword: str, vr: str) -> int:
    """Attributes the table does not list: kept, except UIDs and dates (see README)."""
    if vr == "UI":
        return KEEP if _CLASS_UID.search(keyword or "") else UID
    if vr in ("DA", "DT"):
        return CLEAN  # shifted with the patient's offset, so no true date survives
    return KEEP


_PRIV = re.compile(r'^\(([0-9a-fA-F]{4}),"?(.*)",([0-9a-fA-F]{2})\)$')
_STD = re.compile(r"^\(([0-9a-fA-F]{4}),([0-9a-fA-F]{4})\)$")


def parse_private_kb(text: str) -> dict[PrivatePath, str]:
    """Safe (`k`) rows of the TCIA KB as full paths of (group, creator, element byte)."""
    keep: dict[PrivatePath, str] = {}
    for row in csv.DictReader(io.StringIO(text.lstrip("\ufeff"))):
        if (row.get("private_disposition") or "").strip().lower() != "k":
            continue
        path: list = []
        for part in re.split(r"\[<\d+>\]", row["element_sig_pattern"].strip()):
            if m := _STD.match(part):
                path.append(int(m.group(1) + m.group(2), 16))
            elif m := _PRIV.match(part):
                path.append((int(m.group(1), 16), m.group(2).strip(), int(m.group(3), 16)))
            else:
                path = []
                break
        if path and isinstance(path[-1], tuple):
            keep[tuple(path)] = (row.get("vr") or "").strip().upper() or "UN"
    if not keep:
        raise ConfigError("The TCIA private tag KB has no usable rows; restore it from git.")
    return keep


def _quarantine(data: dict, path: Path) -> QuarantineRules:
    try:
        attrs = {}
        for kw, values in data.get("attributes", {}).items():
            tag = tag_for_keyword(kw)
            if tag is None:
                raise ConfigError(f"{path}: unknown attribute keyword {kw!r}.")
            attrs[tag] = (kw, frozenset(str(v).upper() for v in values))
        present = {}
        for kw in data.get("present", []):
            tag = tag_for_keyword(kw)
            if tag is None:
                raise ConfigError(f"{path}: unknown attribute keyword {kw!r}.")
            present[tag] = kw
        return QuarantineRules(
            version=str(data["version"]),
            modalities=frozenset(str(m).upper() for m in data["modalities"]),
            sop_classes={str(k): str(v) for k, v in data["sop_classes"].items()},
            attribute_values=attrs,
            present=present,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path} lacks or misformats {exc}; compare with git.") from None


def load_policy(policies_dir: Path) -> DeidPolicy:
    """Read policies_dir/deid (or policies_dir itself if it holds options.toml)."""
    base = Path(policies_dir)
    deid_dir = base if (base / "options.toml").is_file() else base / "deid"
    opts_path = deid_dir / "options.toml"
    raw = _toml(opts_path)
    try:
        version = raw["version"]
        if not isinstance(version, str) or not version:
            raise ConfigError(f"{opts_path}: version must be a non-empty string.")
        sources = raw["sources"]
        enabled = frozenset(k for k, v in raw["options"].items() if v is True)
        unknown = set(raw["options"]) - set(OPTION_ORDER)
        if unknown:
            raise ConfigError(f"{opts_path}: unknown options {sorted(unknown)}.")
        profile_path = _source(deid_dir, sources, "profile")
        kb_path = _source(deid_dir, sources, "private_tag_kb")
        q_path = _source(deid_dir, sources, "quarantine")
        try:
            rows = json.loads(profile_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"{profile_path} is not valid JSON; restore it from git.") from None
        if not isinstance(rows, list) or len(rows) < 500:
            raise ConfigError(f"{profile_path} is not the whole Table E.1-1; restore it.")
        listed, patterns, choices = _compile_profile(rows, enabled)
        for key, name in raw.get("overrides", {}).items():
            if name not in ACTION_NAMES:
                raise ConfigError(f"{opts_path}: override {key} has unknown action {name!r}.")
            listed[_tag(key, f"{opts_path} [overrides]")] = ACTION_NAMES[name]
        identity = {
            _tag(t, f"{opts_path} [identity_sources]") for t in raw["identity_sources"]["tags"]
        }
        actions: dict[int, tuple[int, str, bool]] = {}
        for tag, entry in DicomDictionary.items():
            vr = entry[0]
            act = listed.get(tag)
            if vr == "SQ" and tag in choices and act == _COMBINED[choices[tag]]:
                act = _sequence_choice(entry[4], choices[tag])
            if act is None:
                act = _default_action(entry[4], vr)
            actions[tag] = (act, vr, tag in identity or vr == "PN")
        for tag, act in listed.items():
            if tag not in actions:  # listed in the table but unknown to this pydicom
                actions[tag] = (act, "UN", tag in identity)
        dates = raw["dates"]
        lo, hi = int(dates["offset_days_min"]), int(dates["offset_days_max"])
        if not lo < hi or lo <= 0 <= hi:
            raise ConfigError(f"{opts_path}: [dates] must give a range that excludes 0.")
        ages, clean = raw["ages"], raw["clean"]
        if clean["on_known_identifier"] not in ("remove", "quarantine"):
            raise ConfigError(f"{opts_path}: clean.on_known_identifier is remove or quarantine.")
        codes_cfg = raw["option_codes"]
        codes = [codes_cfg["basic"]] + [
            codes_cfg[o] for o in OPTION_ORDER if o in enabled and o in codes_cfg
        ]
        method_codes = tuple((c, CODE_MEANINGS[c]) for c in codes)
        edition = str(sources["profile"].get("edition", "unknown"))
        graphics = patterns.get("60xx3000", REMOVE) == REMOVE or "cleanGraphOpt" in enabled
        safe_private = "rtnSafePrivOpt" in enabled
        private_keep = (
            parse_private_kb(kb_path.read_text(encoding="utf-8-sig")) if safe_private else {}
        )
        quarantine = _quarantine(_toml(q_path), q_path)
        return DeidPolicy(
            version=version,
            level=str(raw.get("level", "limited-access")),
            profile_edition=edition,
            options=enabled,
            actions=actions,
            private_keep=private_keep,
            remove_graphics_groups=graphics,
            safe_private=safe_private,
            quarantine=quarantine,
            offset_days=(lo, hi),
            adult_years=int(ages["adult_years"]),
            band_years=int(ages["band_years"]),
            cap_years=int(ages["cap_years"]),
            clean_on_hit=clean["on_known_identifier"],
            min_name_part=int(clean["min_name_part"]),
            min_identifier=int(clean["min_identifier"]),
            birth_date_tag=_tag(raw["identity_sources"]["birth_date"], str(opts_path)),
            dummies={str(k): str(v) for k, v in raw["dummies"].items()},
            sr_remove_concepts=frozenset(raw["structured_content"]["remove_concepts"]),
            method_codes=method_codes,
            method_text=(
                f"PS3.15 E.1-1 {edition} Basic Profile with options",
                f"teaching-archive deid policy {version}"[:64],
            ),
            skip_known_in=frozenset(
                _tag(t, f"{opts_path} [residual]") for t in raw["residual"]["skip_known_in"]
            ),
            remove_free_text=frozenset(
                _tag(t, f"{opts_path} [clean] remove_free_text")
                for t in clean.get("remove_free_text", [])
            ),
            sources={
                "profile": _sha256(profile_path),
                "private_tag_kb": _sha256(kb_path),
                "quarantine": _sha256(q_path),
            },
        )
    except KeyError as exc:
        raise ConfigError(f"{opts_path} lacks {exc}; compare it with the copy in git.") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{opts_path} has a malformed value ({exc}); fix it.") from None


def keyword(tag: int) -> str:
    """Attribute keyword for messages (never a value)."""
    if (tag >> 16) & 1:
        return "private"
    return keyword_for_tag(tag) or "unknown"

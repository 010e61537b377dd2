"""The pixel policy as data: OCR settings, candidate rules, masking templates, consent.

Everything that decides what happens to pixels lives in ``policies/`` (reviewed like
code, versioned) so a reviewer can see why an instance was released, masked or held.
Loading validates strictly and raises ArchiveError naming the file and field: a
half-understood policy must stop ingest rather than let pixels through unchecked.

Layout under the policies directory:

    masking/policy.toml          OCR settings, candidate rules, facial-features rule
    masking/templates/*.toml     one masking template per file
    consent.toml                 photograph consent levels and what each use needs
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from archive.errors import ArchiveError

TEMPLATE_VERSION = 1


@dataclass(frozen=True)
class Region:
    """A pixel rectangle: x, y of the top-left corner, width and height (columns/rows)."""

    x: int
    y: int
    width: int
    height: int

    def contains(self, other: Region, tolerance: int = 2) -> bool:
        """True when ``other`` lies inside this region (with a small pixel tolerance)."""
        return (
            other.x >= self.x - tolerance
            and other.y >= self.y - tolerance
            and other.x + other.width <= self.x + self.width + tolerance
            and other.y + other.height <= self.y + self.height + tolerance
        )

    def as_dict(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height}


@dataclass(frozen=True)
class MaskTemplate:
    """Regions to black out on images of one device type, and its clinical image area.

    ``image_area`` documents the rectangles holding the clinical image itself (for the
    reviewer's preview); it hides nothing from OCR: after masking, the whole frame minus
    the masked regions is read, and any text left holds the instance (issue 24).
    A template matches on manufacturer, model, size and modality, and, when given, SOP
    class and photometric interpretation; at use, OCR must also find text inside its
    regions, or it is not this layout.
    """

    name: str
    manufacturer: str
    model: str  # "*" matches any model of that manufacturer
    rows: int
    columns: int
    modality: str
    regions: tuple[Region, ...]
    image_area: tuple[Region, ...] = ()
    version: int = TEMPLATE_VERSION
    description: str = ""
    source: Path | None = None
    sop_classes: tuple[str, ...] = ()  # empty: any SOP class
    photometric: tuple[str, ...] = ()  # empty: any photometric interpretation

    @property
    def label(self) -> str:
        return f"{self.name}@v{self.version}"


@dataclass(frozen=True)
class OcrSettings:
    enabled: bool
    command: str
    language: str
    page_segmentation_mode: int
    min_confidence: float
    min_text_length: int
    frames_to_sample: int  # 0: every frame (identical frames are read once)
    upscale_below: int
    upscale_factor: int
    timeout_seconds: float
    extra_modalities: tuple[str, ...]  # non-candidate modalities also screened by OCR
    bright_thresholds: tuple[int, ...] = ()  # extra passes on pixels >= threshold (0-255)
    # words shorter than 4 letters/digits need this confidence (speckle reads as "tin")
    short_word_min_confidence: float = 0.0
    # two more passes on a 3x3-smoothed frame: only its brightest, and only its darkest,
    # pixels (speckle averages out, text strokes do not): text on ultrasound speckle and
    # on grey gradients that one global threshold misses
    smoothed_passes: bool = False


@dataclass(frozen=True)
class CandidateRules:
    modalities: tuple[str, ...]
    sop_classes: dict[str, str]  # uid -> human name
    document_sop_classes: dict[str, str]  # encapsulated documents: no pixels to check
    image_type_markers: tuple[str, ...]
    description_markers: tuple[str, ...]
    scanned_conversion_types: tuple[str, ...]
    release_clean_candidates: bool
    # (0008,0008) values 1-2 that mark a derived or secondary image (any modality)
    image_type_values: tuple[str, ...] = ()
    # any (0008,0064) Conversion Type present marks a capture (WSD, SYN, DV, ...)
    any_conversion_type: bool = False


@dataclass(frozen=True)
class PhotographRules:
    modalities: tuple[str, ...]
    sop_classes: dict[str, str]


@dataclass(frozen=True)
class FacialRules:
    modalities: tuple[str, ...]
    max_slice_thickness_mm: float
    body_parts: tuple[str, ...]
    description_markers: tuple[str, ...]
    flag_when_thickness_unknown: bool
    # the pixel check (archive.pixels.face): CT/MR slices this thin or thinner are read
    check_thickness_mm: float = 3.0
    min_protrusion_mm: float = 10.0  # nose/lips/chin in front of the outline 25 mm aside
    max_spacing_mm: float = 3.0  # coarser series cannot render a face
    min_face_extent_mm: float = 20.0  # facial outline over at least this height
    hold_exports: bool = True  # limited-access cases with a face: exports held
    hold_shares: bool = True  # ... and third-party shares held
    publication: str = "deface"  # "deface" or "refuse": what publication review requires


@dataclass(frozen=True)
class ConsentRules:
    """Photograph consent levels, lowest first, and the minimum level each use needs."""

    version: int
    levels: tuple[str, ...]
    photograph_release_minimum: str
    uses: dict[str, str]
    archive_levels: dict[str, str]

    def rank(self, level: str | None) -> int:
        """Position of ``level`` (-1 for none/unknown: an unknown level grants nothing)."""
        if level is None:
            return -1
        try:
            return self.levels.index(level)
        except ValueError:
            return -1


@dataclass(frozen=True)
class MaskingPolicy:
    version: int
    ocr: OcrSettings
    candidates: CandidateRules
    photographs: PhotographRules
    facial: FacialRules
    consent: ConsentRules
    templates: tuple[MaskTemplate, ...] = field(default=())
    policies_dir: Path | None = None

    @property
    def label(self) -> str:
        return f"masking-policy v{self.version}, consent v{self.consent.version}"


# --- loading -----------------------------------------------------------------------------


class _Reader:
    """Typed access to one TOML table that names the file and key in every error."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def _fail(self, key: str, what: str) -> ArchiveError:
        return ArchiveError(f"{self.where}: '{key}' {what}; fix the policy file and retry")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self._fail(key, "is missing")
            return default
        value = self.data[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self._fail(key, "must be a number, not true/false")
        if not isinstance(value, kind):
            raise self._fail(key, f"has the wrong type ({type(value).__name__})")
        return value

    def strings(self, key: str, default: Any = ...) -> tuple[str, ...]:
        value = self.get(key, list, default)
        if not all(isinstance(v, str) for v in value):
            raise self._fail(key, "must be a list of strings")
        return tuple(value)

    def table(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict), f"{self.where} [{key}]")

    def str_map(self, key: str) -> dict[str, str]:
        value = self.get(key, dict)
        if not all(isinstance(v, str) for v in value.values()):
            raise self._fail(key, "must map names to strings")
        return dict(value)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ArchiveError(
            f"policy file {path} is missing; restore it from the repository"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ArchiveError(
            f"policy file {path} is not valid TOML ({exc}); fix it and retry"
        ) from None


def _region(raw: Any, where: str) -> Region:
    if not isinstance(raw, dict):
        raise ArchiveError(f"{where}: each region must be a table with x, y, width, height")
    r = _Reader(raw, where)
    region = Region(r.get("x", int), r.get("y", int), r.get("width", int), r.get("height", int))
    if region.x < 0 or region.y < 0 or region.width <= 0 or region.height <= 0:
        raise ArchiveError(f"{where}: region {region.as_dict()} must have x,y >= 0, size > 0")
    return region


def parse_template(data: dict[str, Any], where: str, source: Path | None = None) -> MaskTemplate:
    """Build and validate a template from its TOML table."""
    r = _Reader(data, where)
    version = r.get("version", int)
    if version != TEMPLATE_VERSION:
        raise ArchiveError(f"{where}: template version {version} is not supported (expect 1)")
    m = r.table("match")
    regions = tuple(
        _region(x, f"{where} regions[{i}]") for i, x in enumerate(r.get("regions", list))
    )
    if not regions:
        raise ArchiveError(f"{where}: a template needs at least one region to mask")
    image_area = tuple(
        _region(x, f"{where} image_area[{i}]") for i, x in enumerate(r.get("image_area", list, []))
    )
    template = MaskTemplate(
        name=r.get("name", str),
        manufacturer=m.get("manufacturer", str),
        model=m.get("model", str),
        rows=m.get("rows", int),
        columns=m.get("columns", int),
        modality=m.get("modality", str),
        regions=regions,
        image_area=image_area,
        version=version,
        description=r.get("description", str, ""),
        source=source,
        sop_classes=m.strings("sop_classes", ()),
        photometric=tuple(v.upper() for v in m.strings("photometric", ())),
    )
    for reg in regions + image_area:
        if reg.x + reg.width > template.columns or reg.y + reg.height > template.rows:
            raise ArchiveError(
                f"{where}: region {reg.as_dict()} lies outside the "
                f"{template.rows}x{template.columns} image"
            )
    return template


def _load_consent(path: Path) -> ConsentRules:
    data = _read_toml(path)
    r = _Reader(data, str(path))
    levels = r.strings("levels")
    rules = ConsentRules(
        version=r.get("version", int),
        levels=levels,
        photograph_release_minimum=r.get("photograph_release_minimum", str),
        uses=r.str_map("uses"),
        archive_levels=r.str_map("archive_levels"),
    )
    named = [rules.photograph_release_minimum, *rules.uses.values(), *rules.archive_levels.values()]
    for level in named:
        if level not in levels:
            raise ArchiveError(f"{path}: consent level '{level}' is not one of {list(levels)}")
    return rules


def load_templates(templates_dir: Path) -> tuple[MaskTemplate, ...]:
    """All templates in ``templates_dir`` (sorted by file name; names must be unique)."""
    templates: list[MaskTemplate] = []
    seen: set[str] = set()
    if not templates_dir.is_dir():
        return ()
    for path in sorted(templates_dir.glob("*.toml")):
        template = parse_template(_read_toml(path), str(path), source=path)
        if template.name in seen:
            raise ArchiveError(f"{path}: template name '{template.name}' is used twice")
        seen.add(template.name)
        templates.append(template)
    return tuple(templates)


def load_masking_policy(policies_dir: Path) -> MaskingPolicy:
    """Read the pixel policy, templates and consent rules from ``policies_dir``."""
    path = policies_dir / "masking" / "policy.toml"
    r = _Reader(_read_toml(path), str(path))
    o = r.table("ocr")
    c = r.table("candidates")
    p = r.table("photographs")
    f = r.table("facial_features")
    ocr = OcrSettings(
        enabled=o.get("enabled", bool),
        command=o.get("command", str),
        language=o.get("language", str),
        page_segmentation_mode=o.get("page_segmentation_mode", int),
        min_confidence=float(o.get("min_confidence", (int, float))),
        min_text_length=o.get("min_text_length", int),
        frames_to_sample=o.get("frames_to_sample", int),
        upscale_below=o.get("upscale_below", int),
        upscale_factor=o.get("upscale_factor", int),
        timeout_seconds=float(o.get("timeout_seconds", (int, float))),
        extra_modalities=tuple(m.upper() for m in o.strings("extra_modalities")),
        bright_thresholds=tuple(int(t) for t in o.get("bright_thresholds", list, [])),
        short_word_min_confidence=float(o.get("short_word_min_confidence", (int, float), 0)),
        smoothed_passes=o.get("smoothed_passes", bool, False),
    )
    if f.get("publication", str, "deface") not in ("deface", "refuse"):
        raise ArchiveError(f"{path}: facial_features.publication must be 'deface' or 'refuse'")
    if not all(0 < t < 256 for t in ocr.bright_thresholds):
        raise ArchiveError(f"{path}: bright_thresholds must be grey levels between 1 and 255")
    if ocr.frames_to_sample < 0 or ocr.upscale_factor < 1 or ocr.min_text_length < 1:
        raise ArchiveError(
            f"{path}: frames_to_sample must be >= 0 (0: every frame), upscale_factor and "
            "min_text_length >= 1"
        )
    policy = MaskingPolicy(
        version=r.get("version", int),
        ocr=ocr,
        candidates=CandidateRules(
            modalities=tuple(m.upper() for m in c.strings("modalities")),
            sop_classes=c.str_map("sop_classes"),
            document_sop_classes=c.str_map("document_sop_classes"),
            image_type_markers=tuple(m.upper() for m in c.strings("image_type_markers")),
            description_markers=tuple(m.lower() for m in c.strings("description_markers")),
            scanned_conversion_types=tuple(c.strings("scanned_conversion_types")),
            release_clean_candidates=c.get("release_clean_candidates", bool),
            image_type_values=tuple(v.upper() for v in c.strings("image_type_values", ())),
            any_conversion_type=c.get("any_conversion_type", bool, False),
        ),
        photographs=PhotographRules(
            modalities=tuple(m.upper() for m in p.strings("modalities")),
            sop_classes=p.str_map("sop_classes"),
        ),
        facial=FacialRules(
            modalities=tuple(m.upper() for m in f.strings("modalities")),
            max_slice_thickness_mm=float(f.get("max_slice_thickness_mm", (int, float))),
            body_parts=tuple(b.upper() for b in f.strings("body_parts")),
            description_markers=tuple(b.lower() for b in f.strings("description_markers")),
            flag_when_thickness_unknown=f.get("flag_when_thickness_unknown", bool),
            check_thickness_mm=float(f.get("check_thickness_mm", (int, float), 3.0)),
            min_protrusion_mm=float(f.get("min_protrusion_mm", (int, float), 10.0)),
            max_spacing_mm=float(f.get("max_spacing_mm", (int, float), 3.0)),
            min_face_extent_mm=float(f.get("min_face_extent_mm", (int, float), 20.0)),
            hold_exports=f.get("hold_exports", bool, True),
            hold_shares=f.get("hold_shares", bool, True),
            publication=f.get("publication", str, "deface"),
        ),
        consent=_load_consent(policies_dir / "consent.toml"),
        templates=load_templates(policies_dir / "masking" / "templates"),
        policies_dir=policies_dir,
    )
    return policy


# --- matching and defining templates -------------------------------------------------------


def _norm(text: object) -> str:
    return " ".join(str(text or "").split()).casefold()


def match_template(ds: Any, policy: MaskingPolicy) -> MaskTemplate | None:
    """The template for this instance's device and image size, or None.

    Manufacturer, model and modality compare case- and whitespace-insensitively; rows
    and columns must be equal; a template that lists SOP classes or photometric
    interpretations matches only those. A template with an exact model wins over a "*"
    one; ties go to the first by name, so the choice is deterministic. (Whether the
    template's regions hold this image's text is checked by OCR at use: see assess.)
    """
    manufacturer = _norm(ds.get("Manufacturer"))
    model = _norm(ds.get("ManufacturerModelName"))
    modality = _norm(ds.get("Modality"))
    rows, columns = ds.get("Rows"), ds.get("Columns")
    sop_class = str(ds.get("SOPClassUID") or "").strip()
    photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    best: MaskTemplate | None = None
    for t in sorted(policy.templates, key=lambda t: t.name):
        if (
            _norm(t.manufacturer) != manufacturer
            or _norm(t.modality) != modality
            or t.rows != rows
            or t.columns != columns
            or (t.sop_classes and sop_class not in t.sop_classes)
            or (t.photometric and photometric not in t.photometric)
        ):
            continue
        if t.model == "*":
            if best is None:
                best = t
        elif _norm(t.model) == model:
            if best is None or best.model == "*":
                best = t
    return best


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


def define_template(
    name: str,
    manufacturer: str,
    model: str,
    rows: int,
    columns: int,
    modality: str,
    regions: list[Region] | list[tuple[int, int, int, int]],
    *,
    image_area: list[Region] | list[tuple[int, int, int, int]] = (),  # type: ignore[assignment]
    description: str = "",
    sop_classes: tuple[str, ...] = (),
    photometric: tuple[str, ...] = (),
) -> MaskTemplate:
    """Build a validated template (e.g. from a reviewer's region set)."""
    if not _NAME_RE.match(name):
        raise ArchiveError(
            f"template name '{name}' must be lower-case letters, digits, '.', '_' or '-'"
        )

    def regs(items: Any, what: str) -> list[dict[str, int]]:
        out = []
        for item in items:
            reg = item if isinstance(item, Region) else Region(*(int(v) for v in item))
            out.append(reg.as_dict())
        return out

    data = {
        "version": TEMPLATE_VERSION,
        "name": name,
        "description": description,
        "match": {
            "manufacturer": manufacturer,
            "model": model,
            "rows": int(rows),
            "columns": int(columns),
            "modality": modality,
            **({"sop_classes": list(sop_classes)} if sop_classes else {}),
            **({"photometric": list(photometric)} if photometric else {}),
        },
        "regions": regs(regions, "regions"),
        "image_area": regs(image_area, "image_area"),
    }
    return parse_template(data, f"template '{name}'")


def template_to_toml(template: MaskTemplate) -> str:
    data: dict[str, Any] = {
        "version": template.version,
        "name": template.name,
        "description": template.description,
        "match": {
            "manufacturer": template.manufacturer,
            "model": template.model,
            "rows": template.rows,
            "columns": template.columns,
            "modality": template.modality,
            **({"sop_classes": list(template.sop_classes)} if template.sop_classes else {}),
            **({"photometric": list(template.photometric)} if template.photometric else {}),
        },
        "regions": [r.as_dict() for r in template.regions],
    }
    if template.image_area:
        data["image_area"] = [r.as_dict() for r in template.image_area]
    return tomli_w.dumps(data)


def save_template(policies_dir: Path, template: MaskTemplate) -> Path:
    """Write ``template`` as a new file under masking/templates/, atomically.

    Refuses to overwrite: a template in use is changed by review, not by a save.
    """
    directory = policies_dir / "masking" / "templates"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{template.name}.toml"
    existing = {t.name for t in load_templates(directory)}
    if target.exists() or template.name in existing:
        raise ArchiveError(
            f"a masking template named '{template.name}' already exists; choose another name"
        )
    text = template_to_toml(template)
    parse_template(tomllib.loads(text), str(target))  # what we write must load back
    fd, tmp = tempfile.mkstemp(prefix=f".{template.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, target)  # fails if the target appeared meanwhile: no silent overwrite
    except FileExistsError:
        raise ArchiveError(
            f"a masking template named '{template.name}' already exists; choose another name"
        ) from None
    finally:
        os.unlink(tmp)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target

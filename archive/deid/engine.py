"""The de-identification engine: DICOM Part-10 bytes in, released bytes or quarantine out.

`deidentify` first tries the raw-element path (archive/deid/raw.py: one index of the
file's elements, kept elements copied byte for byte, the others through this module's
per-element code `_Walk.apply` / `_Walk.private`); what it declines goes to the full
path below (`deidentify_full`), whose output it reproduces byte for byte.

The full path, designed for speed and for certainty:
- pydicom parses the file into *raw* elements; the engine reads and rewrites raw value
  bytes (one dict lookup per element) and never decodes pixel data, so pixel data is
  written back byte-identical and untouched elements cost almost nothing.
- One walk over every dataset at every depth (sequences, private sequences, UN) applies
  the precompiled policy, collects this instance's identifiers (names, IDs, dates,
  institution, staff) and the text that is kept; descriptions are cleaned and then all
  kept text is residual-checked in one regex pass.
- Anything unexpected inside the engine quarantines; nothing escapes as a release.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from io import BytesIO

from pydicom import dcmread
from pydicom.charset import convert_encodings, decode_bytes, encode_string
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import dcmwrite, write_dataset
from pydicom.sequence import Sequence

from archive.deid import policy as P
from archive.deid.freetext import clean as clean_free_text
from archive.deid.freetext import distinctive_words
from archive.deid.keyed import DICOM_ROOT, DeidSecrets, date_offset_days, map_uid, pseudonym_for
from archive.deid.residual import known_pattern, scan_many
from archive.errors import ArchiveError

IMPLEMENTATION_CLASS_UID = "2.25.203357271580409718478963474313946227905"
IMPLEMENTATION_VERSION = "TEACHARC_DEID1"
_FAST_CODECS = {"iso8859": "latin_1", "latin_1": "latin_1", "utf_8": "utf_8"}
_MAX_LEN = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 10240}
_BINARY_SCAN_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})
_AGE = re.compile(r"^(\d{3})([DWMY])$")
_CONTENT_SEQ = 0x0040A730
_CONCEPT_NAME = 0x0040A043
_CODE_VALUE = 0x00080100
_PLACE_NAMES = frozenset({0x00080080, 0x00081040})  # Institution (Department) Name
_REQUIRED = (0x00080016, 0x00080018, 0x0020000D, 0x0020000E)


class DeidInputError(ArchiveError):
    """The bytes are not a readable DICOM instance; refuse them (HTTP 4xx / DICOM failure)."""


@dataclass
class DeidResult:
    released: bytes | None
    quarantine_reason: str | None
    quarantined_bytes: bytes | None
    patient_pseudonym: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    modality: str
    level: str
    policy_version: str
    flags: list[str] = field(default_factory=list)
    sop_class_uid: str = ""
    # the instance's own identifying values, learned before removal (memory only, never
    # written or logged): the pixel step matches OCR words against them
    identifiers: list[str] = field(default_factory=list, repr=False)
    # which path de-identified it: "raw" (archive/deid/raw.py) or "full" (this module)
    path: str = "full"
    # what the raw path wrote, for `header` (built on first use)
    written: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def header(self) -> Dataset | None:
        """The released (or held) instance's header, its elements before the pixel data,
        as the raw path wrote them (None from the full path): the pixel step reads it
        instead of parsing the bytes again."""
        if isinstance(self.written, tuple):
            from archive.deid.raw import header_of

            self.written = header_of(*self.written)
        return self.written


class _Walk:
    """State of one instance's de-identification."""

    def __init__(self, policy: P.DeidPolicy, secrets: DeidSecrets, encodings: list[str]):
        self.p = policy
        self.s = secrets
        self.actions = policy.actions
        self.encodings = encodings
        codec = _FAST_CODECS.get(encodings[0]) if len(encodings) == 1 else None
        self.codec = codec
        self.offset = 0
        self.pseudonym = ""
        self.known: list[str] = []
        self.texts: list[tuple[tuple, str]] = []  # (label path, kept text)
        self.to_clean: list[tuple[Dataset, int, tuple, str]] = []
        self.problems: list[str] = []

    # --- value access -------------------------------------------------------------
    def text(self, elem: RawDataElement | DataElement) -> str:
        if isinstance(elem, RawDataElement):
            raw = elem.value or b""
            if isinstance(raw, str):
                return raw
            if self.codec:
                return raw.decode(self.codec, errors="replace")
            return decode_bytes(raw, self.encodings, {0x5C, 0x3D, 0x5E})
        v = elem.value
        if v is None:
            return ""
        if isinstance(v, list | tuple) or type(v).__name__ == "MultiValue":
            return "\\".join(str(x) for x in v)
        return str(v)

    def encode(self, text: str) -> bytes:
        if self.codec:
            try:
                return text.encode(self.codec)
            except UnicodeEncodeError:
                pass
        return encode_string(text, self.encodings)

    def put(self, ds: Dataset, tag: int, elem, vr: str, text: str) -> None:
        """Replace a string value, keeping the element raw when it was raw."""
        if isinstance(elem, RawDataElement):
            data = text.encode("ascii") if vr == "UI" else self.encode(text)
            if len(data) % 2:
                data += b"\x00" if vr == "UI" else b" "
            out_vr = (
                elem.VR if elem.VR not in (None, "UN") else (None if elem.is_implicit_VR else vr)
            )
            ds._dict[tag] = RawDataElement(
                elem.tag, out_vr, len(data), data, 0, elem.is_implicit_VR, elem.is_little_endian
            )
        else:
            ds._dict[tag] = DataElement(tag, vr, text)

    def empty(self, ds: Dataset, tag: int, elem, vr: str) -> None:
        if vr == "SQ":
            ds._dict[tag] = DataElement(tag, "SQ", Sequence())
        elif isinstance(elem, RawDataElement):
            ds._dict[tag] = elem._replace(value=b"", length=0)
        else:
            ds._dict[tag] = DataElement(tag, vr, None)

    def dummy(self, ds: Dataset, tag: int, elem, vr: str) -> None:
        value = self.p.dummies.get(vr)
        if vr == "UI":
            self.put(ds, tag, elem, vr, map_uid(self.text(elem).strip("\x00 "), self.s))
        elif value is None:
            self.empty(ds, tag, elem, vr)
        else:
            self.put(ds, tag, elem, vr, value)

    # --- identifiers of this instance --------------------------------------------
    def remember(self, vr: str, text: str) -> None:
        text = text.strip("\x00 ")
        if not text:
            return
        p = self.p
        for value in text.split("\\"):
            value = value.strip()
            if not value:
                continue
            if vr == "PN":
                for group in value.split("="):
                    joined = " ".join(x for x in group.replace("^", " ").split() if x)
                    if len(joined) >= p.min_name_part:
                        self.known.append(joined)
                    self.known.extend(
                        x for x in re.split(r"[\^\s,.]+", group) if len(x) >= p.min_name_part
                    )
            elif len(value) >= p.min_identifier:
                self.known.append(value)

    # --- the walk -------------------------------------------------------------------
    def walk(self, ds: Dataset, path: tuple) -> None:
        d = ds._dict
        actions = self.actions
        creators: dict[int, str] = {}
        kept_blocks: set[int] = set()
        for tag in list(d):
            elem = d[tag]
            group = tag >> 16
            if group & 1:
                self.private(ds, tag, elem, path, creators, kept_blocks)
                continue
            if not tag & 0xFFFF or group < 0x0008:
                del d[tag]  # group lengths; command/meta groups do not belong here
                continue
            if self.p.remove_graphics_groups and (group & 0xFF00) in (0x5000, 0x6000):
                del d[tag]  # curves and overlays, whole repeating groups
                continue
            entry = actions.get(tag)
            if entry is None:
                del d[tag]  # unknown to the dictionary: cannot be checked, so removed
                continue
            self.apply(ds, tag, elem, entry, path)
        for ctag in [t for t in d if (t >> 16) & 1 and 0x10 <= (t & 0xFFFF) <= 0xFF]:
            if ((ctag >> 16) << 8 | (ctag & 0xFF)) not in kept_blocks:
                del d[ctag]

    def apply(self, ds: Dataset, tag: int, elem, entry: tuple, path: tuple) -> None:
        """One standard element under its policy entry (action, VR, is_identity). Shared
        by the walk and by the raw-element path (archive/deid/raw.py), which passes a
        holder with only this element in `_dict` (a Dataset when the VR is SQ)."""
        d = ds._dict
        act, vr, ident = entry
        if ident:
            self.remember(vr, self.text(elem))
            if tag in _PLACE_NAMES:  # "ST WULFSTAN INFIRMARY" is also "WULFSTAN"
                self.known.extend(distinctive_words(self.text(elem)))
        if act == P.KEEP:
            if vr == "SQ":
                self.sequence(ds, tag, path)
            elif vr in P.TEXT_VRS:
                self.texts.append((path + (tag,), self.text(elem)))
        elif act == P.UID:
            if vr == "SQ":
                self.sequence(ds, tag, path)
            elif vr == "UI":
                self.uid(ds, tag, elem)
            else:
                self.dummy(ds, tag, elem, vr)
        elif act == P.CLEAN:
            self.clean(ds, tag, elem, vr, path)
        elif act == P.REMOVE:
            if vr == "SQ":
                self.learn(ds, tag)  # its identifiers may echo in kept free text
            del d[tag]
        elif act == P.EMPTY:
            self.empty(ds, tag, elem, vr)
        elif act == P.DUMMY:
            if vr == "SQ":  # a dummy sequence: keep the items, each attribute treated
                self.sequence(ds, tag, path)
            else:
                self.dummy(ds, tag, elem, vr)
        elif act == P.PSEUDO_ID:
            self.put(ds, tag, elem, vr, self.pseudonym)
        elif act == P.PSEUDO_NAME:
            self.put(ds, tag, elem, vr, self.pseudonym)
        elif act == P.AGE:
            self.put(ds, tag, elem, vr, self.age(self.text(elem)))
        else:  # pragma: no cover - policy compiler only emits the above
            raise ValueError("unknown action")

    def sequence(self, ds: Dataset, tag: int, path: tuple, concept_filter: bool = False) -> None:
        elem = ds[tag]  # converts the raw SQ (also UN with a known SQ VR) into items
        if elem.VR != "SQ":
            del ds._dict[tag]  # could not be read as a sequence: cannot be checked
            return
        items = elem.value
        if concept_filter and self.p.sr_remove_concepts:
            keep = [it for it in items if not self.identifying_concept(it)]
            if len(keep) != len(items):
                elem.value = Sequence(keep)
                items = elem.value
        sub = path + (tag,)
        for item in items:
            self.walk(item, sub)

    def identifying_concept(self, item: Dataset) -> bool:
        concept = item.get(_CONCEPT_NAME)
        if concept is None or concept.VR != "SQ" or not concept.value:
            return False
        code = concept.value[0].get(_CODE_VALUE)
        return code is not None and self.text(code).strip() in self.p.sr_remove_concepts

    def learn(self, ds: Dataset, tag: int) -> None:
        """Remember the identifiers inside a sequence about to be removed, at any depth
        (Other Patient IDs, Issuer of Patient ID...), so that their echo in kept free
        text is cleaned too. Nothing in it is kept."""
        try:
            elem = ds[tag]
        except Exception:  # noqa: BLE001 - unreadable: it is removed anyway
            return
        if elem.VR != "SQ":
            return
        stack = list(elem.value)
        while stack:
            item = stack.pop()
            for sub in list(item._dict):
                entry = self.actions.get(sub)
                try:
                    child = item[sub]
                except Exception:  # noqa: BLE001, S112 - unreadable: removed with the rest
                    continue
                if child.VR == "SQ":
                    stack.extend(child.value)
                elif entry is not None and entry[2]:
                    self.remember(entry[1], self.text(child))

    def uid(self, ds: Dataset, tag: int, elem) -> None:
        raw = self.text(elem).strip("\x00 ")
        if not raw:
            return
        mapped = "\\".join(map_uid(u.strip("\x00 "), self.s) for u in raw.split("\\"))
        self.put(ds, tag, elem, "UI", mapped)

    def clean(self, ds: Dataset, tag: int, elem, vr: str, path: tuple) -> None:
        if vr == "SQ":
            self.sequence(ds, tag, path, concept_filter=tag == _CONTENT_SEQ)
        elif vr == "DA" or vr == "DT":
            self.shift(ds, tag, elem, vr)
        elif tag in self.p.remove_free_text:
            self.empty(ds, tag, elem, vr)  # cannot be cleaned with confidence
        elif vr in P.TEXT_VRS:
            self.to_clean.append((ds, tag, path, vr))
        elif vr == "UI":
            self.uid(ds, tag, elem)
        elif vr in _BINARY_SCAN_VRS:
            del ds._dict[tag]  # binary content (timestamps, maker notes) cannot be cleaned
        # TM and numeric values are kept: offsets are whole days

    def shift(self, ds: Dataset, tag: int, elem, vr: str) -> None:
        text = self.text(elem).strip("\x00 ")
        if not text:
            return
        out = []
        for v in text.split("\\"):
            shifted = (
                shift_date(v.strip(), self.offset)
                if vr == "DA"
                else shift_datetime(v.strip(), self.offset)
            )
            if shifted is None:
                self.empty(ds, tag, elem, vr)  # unparseable: the value cannot be kept
                return
            out.append(shifted)
        self.put(ds, tag, elem, vr, "\\".join(out))

    def age(self, text: str) -> str:
        m = _AGE.match(text.strip())
        if not m:
            return ""
        n, unit = int(m.group(1)), m.group(2)
        p = self.p
        if unit != "Y" or n < p.adult_years:
            return text.strip()
        if n >= p.cap_years:
            return f"{p.cap_years:03d}Y"
        return f"{max(n - n % p.band_years, p.adult_years):03d}Y"

    def private(self, ds, tag, elem, path, creators, kept_blocks) -> None:
        d = ds._dict
        group, el = tag >> 16, tag & 0xFFFF
        if 0x10 <= el <= 0xFF:
            creators[el] = self.text(elem).strip("\x00 ")
            return  # creators are kept or dropped after the loop
        creator = creators.get(el >> 8)
        if el < 0x1000 or not self.p.safe_private or not creator:
            del d[tag]
            return
        key = path + ((group, creator, el & 0xFF),)
        kvr = self.p.private_keep.get(key)
        if kvr is None:
            del d[tag]
            return
        vr = elem.VR if elem.VR not in (None, "UN") else kvr
        if vr == "SQ":
            converted = ds[tag]
            if converted.VR != "SQ":
                del d[tag]
                return
            for item in converted.value:
                self.walk(item, key)
        elif vr == "UI":
            self.uid(ds, tag, elem)
        elif vr in ("DA", "DT"):
            self.shift(ds, tag, elem, vr)
        elif vr == "PN":
            self.remember("PN", self.text(elem))
            self.dummy(ds, tag, elem, "PN")
        elif vr in P.TEXT_VRS or vr in _BINARY_SCAN_VRS:
            value = elem.value if isinstance(elem, RawDataElement) else None
            text = value.decode("latin_1") if isinstance(value, bytes) else self.text(elem)
            self.texts.append((key, text))
        if tag in d:
            kept_blocks.add(group << 8 | (el >> 8))

    # --- after the walk -----------------------------------------------------------
    def finish_cleaning(self) -> None:
        compiled = known_pattern(self.known) if self.known else None
        for ds, tag, path, vr in self.to_clean:
            elem = ds._dict.get(tag)
            if elem is None:
                continue
            text = self.text(elem)
            cleaned = text
            if compiled is not None:
                pat, _ = compiled
                if pat.search(text):
                    if self.p.clean_on_hit == "quarantine":
                        self.problems.append(
                            f"identifier in {label(path + (tag,))} (known name or ID)"
                        )
                    cleaned = pat.sub("", text)
                    cleaned = re.sub(r"[ ^]{2,}", " ", cleaned).strip(" ^,;:-")
                    limit = _MAX_LEN.get(vr)
                    if limit:
                        cleaned = cleaned[:limit]
                    self.put(ds, tag, elem, vr, cleaned)
            # Identifiers with no header counterpart: names after a title, phone
            # numbers, e-mail, postcodes, record numbers; dates are shifted as the
            # header dates are (archive/deid/freetext.py).
            screened, found = clean_free_text(cleaned, self.offset)
            if found:
                limit = _MAX_LEN.get(vr)
                screened = screened[:limit] if limit else screened
                self.put(ds, tag, ds._dict[tag], vr, screened)
                cleaned = screened
            self.texts.append((path + (tag,), cleaned))

    def residual(self) -> list[str]:
        skip = self.p.skip_known_in
        plain = [i for i, (path, _) in enumerate(self.texts) if path[-1] in skip]
        full = [i for i, (path, _) in enumerate(self.texts) if path[-1] not in skip]
        hits = [(full[i], k) for i, k in scan_many([self.texts[i][1] for i in full], self.known)]
        hits += [(plain[i], k) for i, k in scan_many([self.texts[i][1] for i in plain])]
        seen: dict[str, None] = {}
        for idx, kind in hits:
            seen[f"residual {kind} in {label(self.texts[idx][0])}"] = None
        return list(seen)


def label(path: tuple) -> str:
    """'(0040,A730)>(0040,A160) TextValue' - tags and keyword, never a value."""
    parts = []
    for comp in path:
        if isinstance(comp, tuple):
            parts.append(f"({comp[0]:04X},{comp[2]:02X}) private")
        else:
            parts.append(f"({comp >> 16:04X},{comp & 0xFFFF:04X})")
    last = path[-1] if path else None
    name = P.keyword(last) if isinstance(last, int) else "private"
    return ">".join(parts) + f" {name}"


def shift_date(value: str, days: int) -> str | None:
    v = value.replace(".", "") if len(value) == 10 else value  # legacy YYYY.MM.DD
    if len(v) != 8 or not v.isdigit():
        return None
    try:
        d = _dt.date(int(v[:4]), int(v[4:6]), int(v[6:])) + _dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def shift_datetime(value: str, days: int) -> str | None:
    """Shift the date part of a DT, keeping precision, time and UTC offset."""
    m = re.fullmatch(r"(\d{4})(\d{2})?(\d{2})?([0-9.]*)([+-]\d{4})?", value)
    if not m:
        return None
    if m.group(3):
        head = shift_date(m.group(1) + m.group(2) + m.group(3), days)
        return None if head is None else head + m.group(4) + (m.group(5) or "")
    year = int(m.group(1)) + round(days / 365.25)  # only year (and month) known
    if year < 1:
        return None
    return f"{year:04d}" + (m.group(2) or "") + m.group(4) + (m.group(5) or "")


def _read(data: bytes) -> Dataset:
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) < 132:
        raise DeidInputError("Not a DICOM file: too short. Send a DICOM Part-10 file.")
    try:
        ds = dcmread(BytesIO(data), force=False)
        for tag in _REQUIRED:  # touch values so truncation shows up now
            if tag not in ds._dict or not ds._dict[tag].value:
                raise DeidInputError(
                    "DICOM file lacks SOP Class, SOP Instance, Study or Series UID; "
                    "resend a complete instance."
                )
        last = ds._dict[next(reversed(ds._dict))]
        if (
            isinstance(last, RawDataElement)
            and last.length != 0xFFFFFFFF
            and last.value is not None
            and len(last.value) != last.length
        ):
            raise DeidInputError(
                "DICOM file is truncated (its last element is cut short); resend it."
            )
        if "TransferSyntaxUID" not in ds.file_meta:
            raise DeidInputError("DICOM file has no transfer syntax in its file meta; resend it.")
        return ds
    except DeidInputError:
        raise
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError, NotImplementedError) as exc:
        raise DeidInputError(
            f"Not a readable DICOM Part-10 file ({type(exc).__name__}); "
            "check the file and resend it."
        ) from None


def _header(ds: Dataset, tag: int, w: _Walk) -> str:
    elem = ds._dict.get(tag)
    return "" if elem is None else w.text(elem).strip("\x00 ")


def _quarantine_reasons(ds: Dataset, policy: P.DeidPolicy, w: _Walk) -> list[str]:
    rules = policy.quarantine
    reasons = []
    modality = _header(ds, 0x00080060, w).upper()
    if modality in rules.modalities:
        reasons.append(f"burnt-in text possible (modality {modality})")
    sop = _header(ds, 0x00080016, w)
    if sop in rules.sop_classes:
        reasons.append(f"burnt-in text possible (SOP class {rules.sop_classes[sop]})")
    for tag, (kw, values) in rules.attribute_values.items():
        if _header(ds, tag, w).upper() in values:
            reasons.append(f"burnt-in text possible ({kw}={_header(ds, tag, w).upper()})")
    for tag, kw in rules.present.items():
        if tag in ds._dict:
            reasons.append(f"burnt-in text possible ({kw} present: secondary or screen capture)")
    for tag in ds._dict:
        if (tag >> 16) & 0xFF01 == 0x6000 and tag & 0xFFFF == 0x0102:
            elem = ds[tag]
            if elem.value not in (None, 0) and (tag & 0xFFFF0000 | 0x3000) not in ds._dict:
                reasons.append("overlay embedded in pixel data bits (60xx,0102)")
    return reasons


_MARK_CACHE: dict[tuple, list[RawDataElement]] = {}
_DEFLATED = "1.2.840.10008.1.2.1.99"


def _mark_elements(policy: P.DeidPolicy, implicit: bool, little: bool) -> list[RawDataElement]:
    """PatientIdentityRemoved, DeidentificationMethod (+ code sequence) and
    LongitudinalTemporalInformationModified, encoded once per policy and encoding."""
    key = (policy.method_text, policy.method_codes, implicit, little)
    cached = _MARK_CACHE.get(key)
    if cached is not None:
        return cached
    ds = Dataset()
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = list(policy.method_text)
    codes = Sequence()
    for value, meaning in policy.method_codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = codes
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    write_dataset(fp, ds)
    parsed = read_dataset(BytesIO(fp.getvalue()), implicit, little)
    elements = [parsed._dict[t] for t in parsed._dict]
    _MARK_CACHE[key] = elements
    return elements


def _mark(ds: Dataset, policy: P.DeidPolicy, implicit: bool, little: bool) -> None:
    d = ds._dict
    for elem in _mark_elements(policy, implicit, little):
        d[elem.tag] = elem  # the writer sorts tags


def _uid_value(uid: str) -> bytes:
    data = uid.encode("ascii")
    return data + b"\x00" if len(data) % 2 else data


def _meta_bytes(sop_class: str, sop_uid: str, ts: str) -> bytes:
    """File meta group, always explicit VR little endian; built afresh so nothing of the
    source's meta (AE titles, private information) is carried over."""
    version = IMPLEMENTATION_VERSION.encode("ascii")
    version += b" " * (len(version) % 2)
    elements = [
        (0x0001, b"OB", b"\x00\x01"),
        (0x0002, b"UI", _uid_value(sop_class)),
        (0x0003, b"UI", _uid_value(sop_uid)),
        (0x0010, b"UI", _uid_value(ts)),
        (0x0012, b"UI", _uid_value(IMPLEMENTATION_CLASS_UID)),
        (0x0013, b"SH", version),
    ]
    body = bytearray()
    for elem, vr, value in elements:
        body += (2).to_bytes(2, "little") + elem.to_bytes(2, "little") + vr
        if vr == b"OB":
            body += b"\x00\x00" + len(value).to_bytes(4, "little")
        else:
            body += len(value).to_bytes(2, "little")
        body += value
    head = b"\x02\x00\x00\x00UL\x04\x00" + len(body).to_bytes(4, "little")
    return head + bytes(body)


def _write(ds: Dataset, ts: str, sop_class: str, sop_uid: str) -> bytes:
    # a preamble can carry anything (e.g. a TIFF header): always 128 zero bytes
    if ts == _DEFLATED:  # rare: let pydicom handle the deflate stream
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ts
        meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128
        out = DicomBytesIO()
        dcmwrite(out, ds, enforce_file_format=True)
        return out.getvalue()
    fp = DicomBytesIO()
    fp.is_implicit_VR = ts == "1.2.840.10008.1.2"
    fp.is_little_endian = ts != "1.2.840.10008.1.2.2"
    fp.write(b"\x00" * 128 + b"DICM" + _meta_bytes(sop_class, sop_uid, ts))
    write_dataset(fp, ds)
    return fp.getvalue()


def deidentify(
    data: bytes, policy: P.DeidPolicy, secrets: DeidSecrets, *, intake: str = "dicom"
) -> DeidResult:
    """De-identify one instance. Unreadable input raises DeidInputError; any other
    failure returns a quarantine result (never the input).

    The raw-element path (archive/deid/raw.py) runs first; whatever it does not handle,
    and any error inside it, goes to the full path under the same policy."""
    from archive.deid.raw import deidentify_raw

    try:
        return deidentify_raw(data, policy, secrets)
    except Exception:  # noqa: BLE001, S110 - Unsupported or unexpected: the full path decides
        pass
    return deidentify_full(data, policy, secrets, intake=intake)


def deidentify_full(
    data: bytes, policy: P.DeidPolicy, secrets: DeidSecrets, *, intake: str = "dicom"
) -> DeidResult:
    """The full path: pydicom reads the whole file, the walk, pydicom writes it back."""
    ds = _read(data if isinstance(data, bytes) else bytes(data))
    result = DeidResult(
        released=None,
        quarantine_reason=None,
        quarantined_bytes=None,
        patient_pseudonym="",
        study_uid="",
        series_uid="",
        sop_instance_uid="",
        modality="",
        level=policy.level,
        policy_version=policy.version,
    )
    try:
        charset = ds._dict.get(0x00080005)
        raw_cs = [] if charset is None else [c.strip() for c in _plain(charset).split("\\")]
        w = _Walk(policy, secrets, convert_encodings(raw_cs or [""]))
        issuer = _header(ds, 0x00100021, w)
        source_id = _header(ds, 0x00100020, w)
        if source_id:
            w.pseudonym = pseudonym_for(issuer, source_id, secrets)
        else:  # no ID to key on: each study becomes its own pseudonymous patient
            w.pseudonym = pseudonym_for("no-patient-id", _header(ds, 0x0020000D, w), secrets)
            result.flags.append("no-source-patient-id")
        lo, hi = policy.offset_days
        w.offset = date_offset_days(w.pseudonym, secrets, lo, hi)
        reasons = _quarantine_reasons(ds, policy, w)
        ts = str(ds.file_meta.TransferSyntaxUID)
        sop_class = _header(ds, 0x00080016, w)
        result.modality = _header(ds, 0x00080060, w).upper()
        result.sop_class_uid = sop_class
        result.patient_pseudonym = w.pseudonym

        w.walk(ds, ())
        result.identifiers = list(dict.fromkeys(w.known))
        w.finish_cleaning()
        reasons.extend(w.problems)
        reasons.extend(w.residual())
        _mark(ds, policy, ts == "1.2.840.10008.1.2", ts != "1.2.840.10008.1.2.2")
        result.study_uid = _header(ds, 0x0020000D, w)
        result.series_uid = _header(ds, 0x0020000E, w)
        result.sop_instance_uid = _header(ds, 0x00080018, w)
        if result.sop_instance_uid.startswith(DICOM_ROOT) or not result.sop_instance_uid.startswith(
            "2.25."
        ):
            reasons.append("SOP Instance UID was not replaced")
        out = _write(ds, ts, sop_class, result.sop_instance_uid)
        if reasons:
            result.quarantine_reason = "; ".join(dict.fromkeys(reasons))
            result.quarantined_bytes = out
        else:
            result.released = out
    except Exception as exc:  # noqa: BLE001 - fail closed: nothing escapes as a release
        result.released = None
        result.quarantined_bytes = None
        result.quarantine_reason = f"de-identification error: {type(exc).__name__}"
    return result


def _plain(elem) -> str:
    value = elem.value
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace").strip("\x00 ")
    if isinstance(value, str):
        return value
    return "\\".join(str(v) for v in value or ())

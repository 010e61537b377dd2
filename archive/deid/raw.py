"""De-identification over raw elements: one walk over the file's bytes, kept elements
copied byte for byte (pixel data included), only changed elements re-encoded.

The full path (archive/deid/engine.py) reads the whole file with pydicom and writes the
whole dataset back; for a 512x512 CT slice nearly all of that time is pydicom reading
and writing elements that the policy keeps as they are. This path:

- indexes the top-level elements of the file in one pass (tag, VR, where the value is),
  without decoding any value and without touching the pixel data;
- decides each element from a table compiled once per policy from the same
  `policy.actions` (`raw_table`): COPY (kept, nothing to learn or check), DROP (removed,
  nothing to learn) or ENGINE (anything else: identity sources, text that is checked or
  cleaned, UIDs, dates, dummies, sequences, private elements);
- hands every ENGINE element to the engine's own code (`_Walk.apply`, `_Walk.private`)
  on a holder that contains only that element, so the values, identifiers, cleaning,
  keyed UIDs and date shifts are those of the full path by construction; a sequence is
  read by pydicom from its own bytes and walked by the same engine code;
- writes the output as slices of the input for runs of kept elements, the changed
  elements encoded as pydicom would write them, and the de-identification marks in tag
  order.

Anything it does not handle raises `Unsupported` before a byte is released, and the
caller (`engine.deidentify`) runs the full path under the same policy: big endian and
deflated transfer syntaxes, files whose elements are out of order or not well formed,
undefined-length elements other than sequences and encapsulated pixel data, SR content
(the ContentSequence concept filter), kept private sequences, and anything unexpected.
Fail closed: an unknown case is never a pass-through.

The output is byte-identical to the full path's (tests/unit/test_deid_raw.py checks it
on every corpus of the tests).
"""

from __future__ import annotations

import struct
from io import BytesIO

from pydicom.charset import convert_encodings
from pydicom.dataelem import RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_data_element
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from archive.deid import engine as E
from archive.deid import policy as P
from archive.deid.keyed import DICOM_ROOT, DeidSecrets, date_offset_days, pseudonym_for

# What the compiled table says about a standard element.
COPY, DROP, ENGINE = 0, 1, 2

_IMPLICIT_LE = "1.2.840.10008.1.2"
_HEAD = struct.Struct("<HH2sH")
_IMPL = struct.Struct("<HHL")
_UL = struct.Struct("<L")
_TAG = struct.Struct("<HH")
_VALID_VR = frozenset(
    vr.encode() for vr in ("AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS "
                           "ST SV TM UC UI UL UN UR US UT UV").split()
)  # fmt: skip
_LONG_VR = frozenset(v.encode() for v in EXPLICIT_VR_LENGTH_32)
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_CHARSET, _PIXEL_REP = 0x00080005, 0x00280103
_MAX_DEPTH = 64
_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."  # Structured Report storage SOP classes


class Unsupported(Exception):  # noqa: N818 - a signal to the caller, not an error
    """This instance is not for the raw path; run the full path (same policy)."""


class _One:
    """A holder of one element: the engine's methods read and write `holder._dict`."""

    __slots__ = ("_dict",)

    def __init__(self, d: dict) -> None:
        self._dict = d


_TABLES: dict[int, tuple[P.DeidPolicy, dict[int, int]]] = {}
# What a removed sequence taught (its identifiers, for cleaning kept free text), by its
# bytes: the slices of a series repeat the same sequences. Memory only, bounded.
_LEARNED: dict[tuple, tuple[P.DeidPolicy, tuple[str, ...]]] = {}


def raw_table(policy: P.DeidPolicy) -> dict[int, int]:
    """tag -> COPY | DROP | ENGINE, compiled once per policy from `policy.actions`.

    COPY and DROP only where the engine would keep the element unchanged (or remove it)
    without reading its value: not an identity source, not text that is residual
    checked, not a sequence. Everything else goes to the engine's code."""
    cached = _TABLES.get(id(policy))
    if cached is not None and cached[0] is policy:
        return cached[1]
    table: dict[int, int] = {}
    for tag, (act, vr, ident) in policy.actions.items():
        if ident or vr == "SQ" or vr == "UN":
            table[tag] = ENGINE
        elif act == P.KEEP and vr not in P.TEXT_VRS:
            table[tag] = COPY
        elif act == P.REMOVE:
            table[tag] = DROP
        else:
            table[tag] = ENGINE
    _TABLES[id(policy)] = (policy, table)
    return table


# --- reading the raw elements --------------------------------------------------------
def _element(buf, pos: int, end: int, implicit: bool) -> tuple[int, str | None, int, int, int]:
    """(tag, VR or None, value start, value length, element end) of the element at pos."""
    if pos + 8 > end:
        raise Unsupported("truncated element header")
    if implicit:
        group, elem, length = _IMPL.unpack_from(buf, pos)
        vr = None
        vstart = pos + 8
    else:
        group, elem, vrb, length = _HEAD.unpack_from(buf, pos)
        if vrb not in _VALID_VR:
            raise Unsupported("unknown VR")
        vr = vrb.decode()
        if vrb in _LONG_VR:
            if pos + 12 > end:
                raise Unsupported("truncated element header")
            length = _UL.unpack_from(buf, pos + 8)[0]
            vstart = pos + 12
        else:
            vstart = pos + 8
    tag = group << 16 | elem
    if length == _UNDEFINED:
        vend, stop = _undefined_end(buf, vstart, end, implicit, 0)
        return tag, vr, vstart, -(vend - vstart) - 1, stop
    stop = vstart + length
    if stop > end:
        raise Unsupported("truncated value")
    return tag, vr, vstart, length, stop


def _undefined_end(buf, pos: int, end: int, implicit: bool, depth: int) -> tuple[int, int]:
    """(start of the sequence delimiter, end after it) of an undefined-length value made
    of items (a sequence, or encapsulated pixel data)."""
    if depth > _MAX_DEPTH:
        raise Unsupported("nesting too deep")
    while True:
        if pos + 8 > end:
            raise Unsupported("undefined length without its delimiter")
        group, elem = _TAG.unpack_from(buf, pos)
        length = _UL.unpack_from(buf, pos + 4)[0]
        tag = group << 16 | elem
        if tag == _SEQ_END:
            if length:
                raise Unsupported("sequence delimiter with a length")
            return pos, pos + 8
        if tag != _ITEM:
            raise Unsupported("not an item inside an undefined-length value")
        pos += 8
        if length != _UNDEFINED:
            pos += length
            continue
        while True:  # an undefined-length item: its elements up to the item delimiter
            if pos + 8 > end:
                raise Unsupported("item without its delimiter")
            if _TAG.unpack_from(buf, pos) == (0xFFFE, 0xE00D):
                if _UL.unpack_from(buf, pos + 4)[0]:
                    raise Unsupported("item delimiter with a length")
                pos += 8
                break
            tag, _vr, vstart, length, stop = _element(buf, pos, end, implicit)
            pos = stop


def peek(data, tags) -> dict[int, bytes]:
    """Raw values of a few elements of a Part-10 file, file meta (group 0002) included,
    without parsing the rest: the index stops after the last tag asked for. Raises
    Unsupported where pydicom must read the file (the caller then does)."""
    wanted = frozenset(tags)
    buf = memoryview(data).cast("B")
    end = len(buf)
    if end < 132 or buf[128:132] != b"DICM":
        raise Unsupported("no Part-10 preamble")
    found: dict[int, bytes] = {}
    pos, ts = 132, None
    while pos + 8 <= end and _TAG.unpack_from(buf, pos)[0] == 0x0002:
        tag, _vr, vstart, length, stop = _element(buf, pos, end, False)
        if length < 0:
            raise Unsupported("undefined length in the file meta")
        if tag == 0x00020010:
            ts = bytes(buf[vstart:stop]).decode("ascii", "replace").strip("\x00 ")
        if tag in wanted:
            found[tag] = bytes(buf[vstart:stop])
        pos = stop
    if not ts:
        raise Unsupported("no transfer syntax")
    uid = UID(ts)
    if not uid.is_transfer_syntax or uid.is_deflated or not uid.is_little_endian:
        raise Unsupported("transfer syntax")
    implicit = ts == _IMPLICIT_LE
    if implicit and pos + 6 <= end and bytes(buf[pos + 4 : pos + 6]).isupper():
        raise Unsupported("explicit VR in an implicit VR file")
    last_wanted = max((t for t in wanted if t >> 16 != 0x0002), default=-1)
    last = -1
    while pos < end:
        tag, _vr, vstart, length, stop = _element(buf, pos, end, implicit)
        if tag <= last:
            raise Unsupported("elements out of order")
        if tag > last_wanted:
            break
        last = tag
        if tag in wanted:
            if length < 0:
                raise Unsupported("undefined length")
            found[tag] = bytes(buf[vstart : vstart + length])
        pos = stop
    return found


# --- writing -----------------------------------------------------------------------
def _encode_raw(elem: RawDataElement, implicit: bool) -> bytes:
    """A changed raw element as pydicom's writer writes a raw element."""
    value = elem.value or b""
    if isinstance(value, str):
        raise Unsupported("text value in a raw element")
    size = len(value)
    head = _TAG.pack(elem.tag >> 16, elem.tag & 0xFFFF)
    if implicit:
        return head + _UL.pack(size) + value
    vr = elem.VR
    if not vr or len(vr) != 2:
        raise Unsupported("no VR to write")
    if vr in EXPLICIT_VR_LENGTH_32:
        return head + vr.encode() + b"\x00\x00" + _UL.pack(size) + value
    if size > 0xFFFF:
        raise Unsupported("value too long for its VR")
    return head + vr.encode() + struct.pack("<H", size) + value


def _encode(elem, implicit: bool, encodings) -> bytes:
    if getattr(elem, "is_raw", False):
        return _encode_raw(elem, implicit)
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, True
    write_data_element(fp, elem, encodings)
    return fp.getvalue()


_MARKS: dict[tuple, list[tuple[int, bytes, RawDataElement]]] = {}


def _marks(policy: P.DeidPolicy, implicit: bool) -> list[tuple[int, bytes, RawDataElement]]:
    key = (policy.method_text, policy.method_codes, implicit)
    out = _MARKS.get(key)
    if out is None:
        elements = E._mark_elements(policy, implicit, True)
        out = [(int(e.tag), _encode_raw(e, implicit), e) for e in elements]
        _MARKS[key] = out
    return out


# --- the walk ------------------------------------------------------------------------
def _scratch(buf, spans: list[tuple[int, int]], implicit: bool) -> Dataset:
    """A dataset read by pydicom from these elements' bytes (the character set, the pixel
    representation and one sequence), as dcmread would have read them."""
    data = b"".join(bytes(buf[a:b]) for a, b in sorted(spans))
    return read_dataset(BytesIO(data), implicit, True)


def deidentify_raw(data, policy: P.DeidPolicy, secrets: DeidSecrets) -> E.DeidResult:
    """The raw path; raises Unsupported for anything the full path must do."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise Unsupported("not bytes")
    buf = memoryview(data).cast("B")
    end = len(buf)
    if end < 132 or buf[128:132] != b"DICM":
        raise Unsupported("no Part-10 preamble")

    # File meta: explicit VR little endian, group 0002 up to the first other group.
    pos, ts = 132, None
    while pos + 8 <= end and _TAG.unpack_from(buf, pos)[0] == 0x0002:
        tag, vr, vstart, length, stop = _element(buf, pos, end, False)
        if length < 0:
            raise Unsupported("undefined length in the file meta")
        if tag == 0x00020010:
            ts = bytes(buf[vstart:stop]).decode("ascii", "replace").strip("\x00 ")
        pos = stop
    if not ts:
        raise Unsupported("no transfer syntax")
    uid = UID(ts)
    if not uid.is_transfer_syntax or uid.is_deflated or not uid.is_little_endian:
        raise Unsupported("transfer syntax")
    implicit = ts == _IMPLICIT_LE
    if implicit and pos + 6 <= end and bytes(buf[pos + 4 : pos + 6]).isupper():
        raise Unsupported("explicit VR in an implicit VR file")  # pydicom would switch

    # Index the dataset's top-level elements.
    index: list[tuple[int, str | None, int, int, int, int]] = []  # tag, VR, start, vstart, len, end
    top: dict[int, RawDataElement] = {}
    index_at: dict[int, tuple[int, int]] = {}
    last = -1
    while pos < end:
        start = pos
        tag, vr, vstart, length, stop = _element(buf, pos, end, implicit)
        if tag <= last or tag >> 16 == 0xFFFE:
            raise Unsupported("elements out of order")
        last = tag
        if length < 0:  # undefined length: sequences and encapsulated pixel data only
            if tag == 0x7FE00010 and vr in (None, "OB", "OW"):
                pass
            elif vr == "SQ" or (vr is None and _dict_sq(tag, policy)):
                pass
            else:
                raise Unsupported("undefined length")
            raw_len, value = _UNDEFINED, None
        else:
            raw_len = length
            if tag in _PIXEL_TAGS:
                value = None
            elif length:
                value = bytes(buf[vstart : vstart + length])
            else:
                value = empty_value_for_VR(vr, raw=True)
        index.append((tag, vr, start, vstart, length, stop))
        if tag == _CHARSET or tag == _PIXEL_REP:
            index_at[tag] = (start, stop)
        top[tag] = RawDataElement(BaseTag(tag), vr, raw_len, value, vstart, implicit, True)
        pos = stop

    for tag in E._REQUIRED:
        elem = top.get(tag)
        if elem is None or not elem.value:
            raise Unsupported("required UID missing")  # the full path says so to the sender

    header = Dataset(dict(top))
    charset = top.get(_CHARSET)
    raw_cs = [] if charset is None else [c.strip() for c in E._plain(charset).split("\\")]
    w = E._Walk(policy, secrets, convert_encodings(raw_cs or [""]))
    sop_class = E._header(header, 0x00080016, w)
    if sop_class.startswith(_SR_PREFIX):
        raise Unsupported("structured report")
    result = E.DeidResult(
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
    issuer = E._header(header, 0x00100021, w)
    source_id = E._header(header, 0x00100020, w)
    if source_id:
        w.pseudonym = pseudonym_for(issuer, source_id, secrets)
    else:
        w.pseudonym = pseudonym_for("no-patient-id", E._header(header, 0x0020000D, w), secrets)
        result.flags.append("no-source-patient-id")
    lo, hi = policy.offset_days
    w.offset = date_offset_days(w.pseudonym, secrets, lo, hi)
    reasons = E._quarantine_reasons(header, policy, w)
    result.modality = E._header(header, 0x00080060, w).upper()
    result.sop_class_uid = sop_class
    result.patient_pseudonym = w.pseudonym

    # The walk: each element copied, dropped, or handed to the engine's code.
    table = raw_table(policy)
    actions = policy.actions
    graphics = policy.remove_graphics_groups
    safe_private, private_keep = policy.safe_private, policy.private_keep
    pieces: list[tuple] = []  # (tag, start, end) a copy | (tag, holder) engine's element
    creators: dict[int, str] = {}
    kept_blocks: set[int] = set()
    creator_at: dict[int, tuple[int, int]] = {}
    converted_creators: dict[int, object] = {}
    extra = [(index_at[t][0], index_at[t][1]) for t in (_CHARSET, _PIXEL_REP) if t in index_at]
    for tag, _vr, start, _vstart, _length, stop in index:
        group = tag >> 16
        if group & 1:
            el = tag & 0xFFFF
            raw = top[tag]
            if 0x10 <= el <= 0xFF:  # a creator: kept or dropped after the loop
                creator_at[tag] = (start, stop)
                one = _One({tag: raw})
                w.private(one, tag, raw, (), creators, kept_blocks)
                pieces.append((tag, one, start, stop))
                continue
            # what the engine removes without reading it (_Walk.private's first checks)
            creator = creators.get(el >> 8)
            if el < 0x1000 or not safe_private or not creator:
                continue
            kvr = private_keep.get(((group, creator, el & 0xFF),))
            if kvr is None:
                continue
            if (
                raw.VR == "SQ"
                or raw.length == _UNDEFINED
                or (raw.VR in (None, "UN") and kvr == "SQ")
            ):
                # a kept private sequence: read by pydicom with its creator, walked by
                # the engine's code
                ctag = (tag & 0xFFFF0000) | (el >> 8)
                holder = _scratch(buf, extra + [(start, stop), creator_at[ctag]], implicit)
                w.private(holder, tag, holder._dict[tag], (), creators, kept_blocks)
                if tag in holder._dict:
                    pieces.append((tag, holder, start, stop))
                creator = holder._dict.get(ctag)
                if creator is not None and not getattr(creator, "is_raw", False):
                    converted_creators[ctag] = (
                        creator  # pydicom converted it: so does the full path
                    )
                continue
            one = _One({tag: raw})
            w.private(one, tag, raw, (), creators, kept_blocks)
            if tag in one._dict:
                pieces.append((tag, one, start, stop))
            continue
        if not tag & 0xFFFF or group < 0x0008:
            continue
        if graphics and (group & 0xFF00) in (0x5000, 0x6000):
            continue
        code = table.get(tag)
        if code is None or code == DROP:
            continue
        if code == COPY:
            pieces.append((tag, None, start, stop))
            continue
        entry = actions[tag]
        raw = top[tag]
        if entry[1] == "SQ":
            if entry[0] not in (P.KEEP, P.UID, P.CLEAN, P.REMOVE, P.EMPTY, P.DUMMY):
                raise Unsupported("sequence action")
            if entry[0] == P.REMOVE:  # only learned from: the same bytes teach the same
                key = (implicit, b"".join(bytes(buf[a:b]) for a, b in extra),
                       bytes(buf[start:stop]))  # fmt: skip
                cached = _LEARNED.get(key)
                if cached is not None and cached[0] is policy:
                    w.known.extend(cached[1])
                    continue
                before = len(w.known)
                holder = _scratch(buf, extra + [(start, stop)], implicit)
                w.apply(holder, tag, holder._dict[tag], entry, ())
                if len(_LEARNED) >= 256:
                    _LEARNED.clear()
                _LEARNED[key] = (policy, tuple(w.known[before:]))
                continue
            holder = _scratch(buf, extra + [(start, stop)], implicit)
            w.apply(holder, tag, holder._dict[tag], entry, ())
            if tag in holder._dict:
                pieces.append((tag, holder, start, stop))
            continue
        one = _One({tag: raw})
        w.apply(one, tag, raw, entry, ())
        if tag in one._dict:
            pieces.append((tag, one, start, stop))
    if creator_at:  # creators of blocks with nothing kept go (as after the engine's walk)
        dropped = {t for t in creator_at if ((t >> 16) << 8 | (t & 0xFF)) not in kept_blocks}
        if dropped:
            pieces = [p for p in pieces if p[0] not in dropped]

    result.identifiers = list(dict.fromkeys(w.known))
    w.finish_cleaning()
    reasons.extend(w.problems)
    reasons.extend(w.residual())

    # The elements as written, the marks in tag order.
    final: dict[int, object] = {}
    for tag, holder, _s, _e in pieces:
        final[tag] = top[tag] if holder is None else holder._dict[tag]
        if tag in converted_creators and final[tag] is top[tag]:
            final[tag] = converted_creators[tag]
    cs_final = final.get(_CHARSET)
    if cs_final is not None and cs_final is not top[_CHARSET]:
        raise Unsupported("character set changed")
    encodings: object = "iso8859"
    cs_bytes = b""
    if cs_final is not None:  # pydicom's writer converts it to read the encodings
        holder = Dataset({_CHARSET: cs_final})
        converted = holder[_CHARSET]
        encodings = converted.value
        final[_CHARSET] = converted
        cs_bytes = _encode(converted, implicit, encodings)
    marks = _marks(policy, implicit)
    mark_tags = {t for t, _b, _e in marks}
    out: list = [b"\x00" * 128 + b"DICM"]
    mi = 0
    run_start = run_end = -1

    def flush() -> None:
        nonlocal run_start, run_end
        if run_start >= 0:
            out.append(buf[run_start:run_end])
            run_start = run_end = -1

    for tag, holder, start, stop in pieces:
        while mi < len(marks) and marks[mi][0] < tag:
            flush()
            out.append(marks[mi][1])
            final[marks[mi][0]] = marks[mi][2]
            mi += 1
        if tag in mark_tags:
            continue  # the mark replaces it
        elem = final[tag]
        if getattr(elem, "is_raw", False) and elem.value is None and tag not in _PIXEL_TAGS:
            # an empty UN: pydicom's writer converts it (its VR from the dictionary)
            flush()
            final[tag] = elem = _converted(tag, elem, top, implicit)
            out.append(_encode(elem, implicit, encodings))
            continue
        if holder is None or elem is top[tag]:
            if tag == _CHARSET:
                flush()
                out.append(cs_bytes)
            elif run_end == start:
                run_end = stop
            else:
                flush()
                run_start, run_end = start, stop
            continue
        flush()
        out.append(_encode(elem, implicit, encodings))
    flush()
    while mi < len(marks):
        out.append(marks[mi][1])
        final[marks[mi][0]] = marks[mi][2]
        mi += 1

    done = _One(final)
    result.study_uid = E._header(done, 0x0020000D, w)
    result.series_uid = E._header(done, 0x0020000E, w)
    result.sop_instance_uid = E._header(done, 0x00080018, w)
    if result.sop_instance_uid.startswith(DICOM_ROOT) or not result.sop_instance_uid.startswith(
        "2.25."
    ):
        reasons.append("SOP Instance UID was not replaced")
    out[0] += E._meta_bytes(sop_class, result.sop_instance_uid, ts)
    released = b"".join(out)
    if reasons:
        result.quarantine_reason = "; ".join(dict.fromkeys(reasons))
        result.quarantined_bytes = released
    else:
        result.released = released
    result.path = "raw"
    result.written = (final, implicit, ts, sop_class, result.sop_instance_uid)
    return result


def _converted(tag: int, elem: RawDataElement, top: dict, implicit: bool):
    """The element converted as pydicom converts it inside the whole dataset: with the
    character set and, for a private element, its creator (its VR comes from them)."""
    elements = {tag: elem}
    for other in (_CHARSET, (tag & 0xFFFF0000) | ((tag & 0xFF00) >> 8) if tag >> 16 & 1 else None):
        if other is not None and other in top:
            elements[other] = top[other]
    holder = Dataset(elements)
    charset = top.get(_CHARSET)
    encoding = "iso8859"
    if charset is not None:
        encoding = convert_encodings(Dataset({_CHARSET: charset})[_CHARSET].value)
    holder.set_original_encoding(implicit, True, encoding)
    return holder[tag]


def header_of(final: dict, implicit: bool, ts: str, sop_class: str, sop_uid: str) -> Dataset:
    """The written instance's header as `dcmread(..., stop_before_pixels=True)` reads it
    (elements up to the pixel data; values raw where they were written raw), for the
    pixel step: no second parse of what was just written."""
    elements = {}
    for tag in sorted(final):
        if tag in _PIXEL_TAGS:
            break
        elements[BaseTag(tag)] = final[tag]
    ds = Dataset(elements)
    charset = elements.get(_CHARSET)
    encoding = convert_encodings(charset.value) if charset is not None else "iso8859"
    ds.set_original_encoding(implicit, True, encoding)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ts
    ds.file_meta = meta
    return ds


def _dict_sq(tag: int, policy: P.DeidPolicy) -> bool:
    entry = policy.actions.get(tag)
    return entry is not None and entry[1] == "SQ"

"""A raw scan of an encoded dataset, before anything parses it.

WHY: DCMTK (inside Orthanc) parses nested sequences recursively: a 720 KB dataset nested
20,000 sequences deep segfaults Orthanc 1.10.1 before any plugin callback sees it, and
pydicom raises RecursionError at a few thousand. So the DICOM front scans what a peer
sent - in the transfer syntax negotiated for it - with an explicit stack (no recursion)
and refuses, before DCMTK or pydicom see a byte of it:

- sequences nested deeper than a limit (policies/access/dicom.toml, e.g. 32);
- element or item lengths that overrun their container or the data (0xFFFFFFF0 too);
- empty, garbage or truncated data (a header cut short, an undefined-length sequence
  or item whose delimiter never comes, a deflate stream that ends early);
- a deflated dataset that inflates beyond a cap (a "zip bomb");
- items or delimiters out of place, invalid VRs, file-meta (0002,xxxx) elements in a
  dataset, more elements than a cap.

It reads tags, VRs and lengths only, never a value, so a refusal carries no patient
data: reasons name offsets and tags. Sequences are found by explicit VR SQ, by UN of
undefined length (whose content is implicit VR little endian, PS3.5 6.2.2), by the data
dictionary in implicit VR, and - for values DCMTK might read as a sequence (implicit VR
private or unknown tags, UN) - by a value that starts with an Item tag: those are
scanned as sequences too (fail closed: a malformed one is refused).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"

UNDEFINED = 0xFFFFFFFF
_ITEM = (0xFFFE, 0xE000)
_ITEM_END = (0xFFFE, 0xE00D)
_SEQ_END = (0xFFFE, 0xE0DD)
_PIXEL_DATA = (0x7FE0, 0x0010)
# VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 7.1.2)
_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV")
)
_ITEM_BYTES = {True: b"\xfe\xff\x00\xe0", False: b"\xff\xfe\xe0\x00"}  # little / big endian


class MalformedDataset(ValueError):
    """The dataset was refused before parsing; the message is safe to show and audit."""


@dataclass(frozen=True)
class ScanLimits:
    max_depth: int = 32
    max_inflated_bytes: int = 1 << 30
    max_elements: int = 2_000_000


@dataclass(frozen=True)
class ScanResult:
    elements: int
    depth: int  # the deepest sequence nesting seen


@dataclass
class _Frame:
    kind: str  # "dataset" | "item" (elements), "seq" (items), "frag" (pixel fragments)
    end: int | None  # offset where a defined-length container ends; None if undefined
    bound: int  # the nearest defined end enclosing it (the data's end at the top)
    implicit: bool
    little: bool


@lru_cache(maxsize=4096)
def _dictionary_vr(group: int, element: int) -> str | None:
    """The data dictionary's VR for a tag, None if unknown (private or unlisted)."""
    from pydicom.datadict import dictionary_VR

    try:
        return str(dictionary_VR((group << 16) | element))
    except KeyError:
        return None


def inflate(data: bytes, limit: int) -> bytes:
    """A deflated dataset (raw deflate, PS3.5 A.5) inflated to at most `limit` bytes."""
    engine = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = engine.decompress(data, limit + 1)
    except zlib.error:
        raise MalformedDataset("the deflated dataset is not a valid deflate stream") from None
    if len(out) > limit:
        raise MalformedDataset(f"the deflated dataset inflates beyond {limit} bytes")
    if not engine.eof:
        raise MalformedDataset("the deflated dataset is truncated (its stream does not end)")
    return out


def scan(data: bytes, transfer_syntax: str, limits: ScanLimits = ScanLimits()) -> ScanResult:
    """Refuse (MalformedDataset) what must not reach a parser; see the module doc."""
    if not data:
        raise MalformedDataset("the dataset is empty (0 bytes)")
    implicit = transfer_syntax == IMPLICIT_LE
    little = transfer_syntax != EXPLICIT_BE
    if transfer_syntax == DEFLATED_LE:
        data = inflate(data, limits.max_inflated_bytes)
        if not data:
            raise MalformedDataset("the deflated dataset is empty")
    return _walk(memoryview(data), implicit, little, limits)


def _walk(buf: memoryview, implicit: bool, little: bool, limits: ScanLimits) -> ScanResult:
    size = len(buf)
    stack = [_Frame("dataset", size, size, implicit, little)]
    depth = deepest = elements = pos = 0
    u16 = {True: struct.Struct("<H"), False: struct.Struct(">H")}
    u32 = {True: struct.Struct("<I"), False: struct.Struct(">I")}
    tag = {True: struct.Struct("<HH"), False: struct.Struct(">HH")}

    def refuse(why: str) -> MalformedDataset:
        return MalformedDataset(f"{why} (at byte {pos})")

    while True:
        top = stack[-1]
        if top.end is not None and pos == top.end:
            if len(stack) == 1:
                return ScanResult(elements, deepest)
            if stack.pop().kind == "seq":
                depth -= 1
            continue
        if pos + 8 > top.bound:
            if top.end is None and top.bound == size:
                raise refuse("the data ends inside a sequence or item (truncated)")
            raise refuse("an element header runs past the end of its container (truncated)")
        le = top.little
        group, element = tag[le].unpack_from(buf, pos)
        if top.kind in ("seq", "frag"):
            length = u32[le].unpack_from(buf, pos + 4)[0]
            pos += 8
            if (group, element) == _ITEM:
                if length == UNDEFINED:
                    if top.kind == "frag":
                        raise refuse("a pixel data fragment has an undefined length")
                    stack.append(_Frame("item", None, top.bound, top.implicit, le))
                elif pos + length > top.bound:
                    raise refuse(f"an item's length {length:#x} overruns its sequence")
                elif top.kind == "frag":
                    pos += length
                else:
                    stack.append(_Frame("item", pos + length, pos + length, top.implicit, le))
                continue
            if (group, element) == _SEQ_END:
                if top.end is not None:
                    raise refuse("a sequence delimiter ends a sequence of defined length")
                if stack.pop().kind == "seq":
                    depth -= 1
                continue
            raise refuse(f"a sequence holds ({group:04X},{element:04X}) instead of an item")
        if (group, element) == _ITEM_END:
            if top.kind != "item" or top.end is not None:
                raise refuse("an item delimiter outside an item of undefined length")
            pos += 8
            stack.pop()
            continue
        if group == 0xFFFE:
            raise refuse(f"an item tag ({group:04X},{element:04X}) outside a sequence")
        if group == 0x0002 and len(stack) == 1:
            raise refuse("file meta information (0002,xxxx) inside the dataset")
        elements += 1
        if elements > limits.max_elements:
            raise refuse(f"more than {limits.max_elements} data elements")
        vr: bytes | None = None
        if top.implicit:
            length = u32[le].unpack_from(buf, pos + 4)[0]
            pos += 8
        else:
            vr = bytes(buf[pos + 4 : pos + 6])
            if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
                raise refuse(f"({group:04X},{element:04X}) has no valid VR")
            if vr in _LONG_VRS:
                if pos + 12 > top.bound:
                    raise refuse("an element header runs past the end of its container")
                length = u32[le].unpack_from(buf, pos + 8)[0]
                pos += 12
            else:
                length = u16[le].unpack_from(buf, pos + 6)[0]
                pos += 8
        if length == UNDEFINED:
            if (group, element) == _PIXEL_DATA and vr in (b"OB", b"OW"):
                stack.append(_Frame("frag", None, top.bound, False, le))
                continue
            if vr is not None and vr not in (b"SQ", b"UN"):
                raise refuse(f"({group:04X},{element:04X}) {vr.decode()} has an undefined length")
            inner_implicit = top.implicit or vr == b"UN"
            depth += 1
            deepest = max(deepest, depth)
            if depth > limits.max_depth:
                raise refuse(f"sequences nested deeper than {limits.max_depth} levels")
            stack.append(_Frame("seq", None, top.bound, inner_implicit, le or vr == b"UN"))
            continue
        if pos + length > top.bound:
            raise refuse(f"({group:04X},{element:04X}) has a length {length:#x} that overruns")
        if length and _is_sequence(buf, pos, length, vr, top.implicit, le, group, element):
            depth += 1
            deepest = max(deepest, depth)
            if depth > limits.max_depth:
                raise refuse(f"sequences nested deeper than {limits.max_depth} levels")
            un = vr == b"UN"
            stack.append(_Frame("seq", pos + length, pos + length, top.implicit or un, le or un))
            continue
        pos += length


def _is_sequence(
    buf: memoryview,
    pos: int,
    length: int,
    vr: bytes | None,
    implicit: bool,
    little: bool,
    group: int,
    element: int,
) -> bool:
    """Is this defined-length value to be scanned as a sequence of items?"""
    if vr == b"SQ":
        return True
    if vr is not None and vr != b"UN":
        return False
    if implicit and _dictionary_vr(group, element) == "SQ":
        return True
    known = _dictionary_vr(group, element) if implicit else None
    if implicit and known is not None:
        return False  # a known non-sequence tag: its value is not parsed as items
    item = _ITEM_BYTES[little if vr is None else True]
    return length >= 8 and bytes(buf[pos : pos + 4]) == item

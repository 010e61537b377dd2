"""The front's raw scan refuses what crashes or confuses a parser, before any parser runs."""

from __future__ import annotations

import struct
import zlib

import pytest

from archive.dicom.guard import (
    DEFLATED_LE,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    MalformedDataset,
    ScanLimits,
    scan,
)
from tests.malformed import encode, good_ct, huge_length, nested, small_header


@pytest.mark.parametrize(
    ("syntax", "implicit", "little"),
    [(IMPLICIT_LE, True, True), (EXPLICIT_LE, False, True), (EXPLICIT_BE, False, False)],
)
def test_ordinary_datasets_pass(syntax: str, implicit: bool, little: bool) -> None:
    _, data = good_ct(implicit=implicit, little=little)
    result = scan(data, syntax)
    assert result.elements > 20


def test_a_planted_instance_with_sequences_and_un_passes() -> None:
    from tests.corpus import make_planted_instance

    ds, _ = make_planted_instance()
    for implicit in (True, False):
        result = scan(encode(ds, implicit=implicit), IMPLICIT_LE if implicit else EXPLICIT_LE)
        assert result.depth >= 1


def test_deep_nesting_is_refused_without_recursion() -> None:
    assert scan(nested(32), EXPLICIT_LE).depth == 32
    with pytest.raises(MalformedDataset, match="nested deeper than 32"):
        scan(nested(33), EXPLICIT_LE)
    with pytest.raises(MalformedDataset, match="nested deeper"):
        scan(nested(20_000), EXPLICIT_LE)  # the dataset that segfaults Orthanc 1.10.1
    assert scan(nested(20_000), EXPLICIT_LE, ScanLimits(max_depth=25_000)).depth == 20_000


def test_nesting_inside_un_and_implicit_private_tags_counts() -> None:
    inner = nested(40)[len(small_header()) :]  # sequences, explicit LE
    # the same nesting as implicit VR, inside an explicit UN of undefined length
    implicit_level = struct.pack("<HHI", 0x0040, 0x0275, 0xFFFFFFFF) + struct.pack(
        "<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    body = implicit_level * 40 + close * 40
    un = struct.pack("<HH2sHI", 0x0009, 0x1010, b"UN", 0, 0xFFFFFFFF)
    with pytest.raises(MalformedDataset, match="nested deeper"):
        scan(small_header() + un + body[8:], EXPLICIT_LE)
    # a private tag of defined length in implicit VR whose value is items
    item = struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body
    private = struct.pack("<HHI", 0x0009, 0x1010, len(item)) + item
    with pytest.raises(MalformedDataset, match="nested deeper"):
        scan(private, IMPLICIT_LE)
    assert inner  # built


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x8a\x13garbage, not DICOM at all" * 40, "overruns|VR|truncated"),
        (huge_length(), "overruns"),
        (small_header()[:-5], "truncated|overruns"),
        (nested(5)[:-8], "truncated"),
        (small_header() + struct.pack("<HHI", 0xFFFE, 0xE000, 0), "outside a sequence"),
        (struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", 2) + b"1\0", "file meta"),
        (small_header() + struct.pack("<HH2sH", 0x0010, 0x0010, b"\x01\x02", 0), "VR"),
    ],
)
def test_malformed_data_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(MalformedDataset, match=why):
        scan(data, EXPLICIT_LE)


def test_random_garbage_is_refused_in_every_syntax() -> None:
    for seed in range(50):
        junk = bytes((seed * 7919 + i * 104729) % 251 for i in range(4096))
        for syntax in (IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE):
            with pytest.raises(MalformedDataset):
                scan(junk, syntax)


def test_deflate_is_inflated_with_a_cap() -> None:
    _, data = good_ct()
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = packer.compress(data) + packer.flush()
    assert scan(deflated, DEFLATED_LE).elements > 20
    with pytest.raises(MalformedDataset, match="inflates beyond"):
        scan(deflated, DEFLATED_LE, ScanLimits(max_inflated_bytes=len(data) // 2))
    with pytest.raises(MalformedDataset, match="truncated"):
        scan(deflated[: len(deflated) // 2], DEFLATED_LE)
    with pytest.raises(MalformedDataset, match="deflate"):
        scan(b"\xff\xff\xff\xff garbage", DEFLATED_LE)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = packer.compress(b"\0" * (64 << 20)) + packer.flush()  # 64 MiB of zeros
    with pytest.raises(MalformedDataset, match="inflates beyond"):
        scan(bomb, DEFLATED_LE, ScanLimits(max_inflated_bytes=1 << 20))


def test_refusals_name_no_values() -> None:
    ds, _ = good_ct()
    data = encode(ds)
    with pytest.raises(MalformedDataset) as caught:
        scan(data[:-3], EXPLICIT_LE)
    assert str(ds.PatientName) not in str(caught.value)
    assert str(ds.PatientID) not in str(caught.value)

"""Frames of a stored instance for WADO-RS (FORMAT.md "Frames").

Uncompressed pixel data is cut into frames and answered as application/octet-stream
(little endian, as stored); compressed (encapsulated) frames are answered as stored,
with the media type of their transfer syntax, never transcoded, so what the browser
decodes is exactly what the archive keeps. Each answer is multipart/related with one
part per requested frame.
"""

from __future__ import annotations

import io
import secrets

# Transfer syntax -> the media type of one of its frames (PS3.18 table 8.7.3-2).
COMPRESSED = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jll",
    "1.2.840.10008.1.2.4.70": "image/jll",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"}


class FrameError(ValueError):
    """No such frame, or pixel data the archive cannot serve as frames."""


def frames_of(data: bytes, numbers: list[int]) -> tuple[list[bytes], str, str]:
    """(frames, media type, transfer syntax) of the 1-based frame `numbers`."""
    import pydicom
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "1.2.840.10008.1.2.1"))
    if "PixelData" not in ds:
        raise FrameError("this instance has no pixel data.")
    count = int(ds.get("NumberOfFrames") or 1)
    if not numbers or any(n < 1 or n > count for n in numbers):
        raise FrameError(f"this instance has frames 1 to {count}.")
    pixels = ds.PixelData
    if syntax in UNCOMPRESSED:
        size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
        size = size * int(ds.BitsAllocated) // 8
        frames = [bytes(pixels[(n - 1) * size : n * size]) for n in numbers]
        return frames, "application/octet-stream", "1.2.840.10008.1.2.1"
    if syntax not in COMPRESSED:
        raise FrameError(f"frames in transfer syntax {syntax} are not served.")
    every = list(generate_frames(pixels, number_of_frames=count))
    return [every[n - 1] for n in numbers], COMPRESSED[syntax], syntax


def multipart(parts: list[bytes], media_type: str, syntax: str) -> tuple[bytes, str]:
    """(body, Content-Type) of a multipart/related answer with these parts."""
    boundary = secrets.token_hex(16)
    part_type = f"{media_type}; transfer-syntax={syntax}"
    out = io.BytesIO()
    for part in parts:
        out.write(f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode())
        out.write(part)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    content_type = f'multipart/related; type="{media_type}"; boundary={boundary}'
    return out.getvalue(), content_type

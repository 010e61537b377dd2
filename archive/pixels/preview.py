"""A PNG preview of one frame, for reviewers deciding on a quarantined instance."""

from __future__ import annotations

import io

from PIL import Image
from pydicom.dataset import Dataset

from archive.pixels.decode import decode_frame, frame_count, to_display8


def render_preview(ds: Dataset, frame: int = 0, max_size: int = 512) -> bytes:
    """PNG bytes of ``frame``, scaled to fit ``max_size`` (aspect kept, never enlarged).

    The bytes show the patient's burnt-in text: callers keep them in memory or inside
    the encrypted quarantine, never in a clear temporary file.
    """
    n = frame_count(ds)
    if not 0 <= frame < n:
        raise ValueError(f"frame {frame} does not exist; the instance has {n} frame(s)")
    arr, pi = decode_frame(ds, frame)
    image = Image.fromarray(to_display8(arr, pi))
    image.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()

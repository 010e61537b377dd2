"""Ingest: every instance, whatever way it came in, passes here before anything is stored."""

from archive.ingest.flags import decide_flag, flags_for_study, record_flags
from archive.ingest.handover import Handover, load_handover
from archive.ingest.pixelstep import PixelOutcome, check_pixels
from archive.ingest.service import Action, IngestOutcome, IngestRefused, IngestService

__all__ = [
    "Action",
    "Handover",
    "IngestOutcome",
    "IngestRefused",
    "IngestService",
    "PixelOutcome",
    "check_pixels",
    "decide_flag",
    "flags_for_study",
    "load_handover",
    "record_flags",
]

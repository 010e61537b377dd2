"""Ingest: every instance, whatever way it came in, passes here before anything is stored."""

from archive.ingest.service import IngestOutcome, IngestRefused, IngestService

__all__ = ["IngestOutcome", "IngestRefused", "IngestService"]

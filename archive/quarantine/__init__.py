"""Instances held back from release: encrypted, readable by no user route, reviewed."""

from archive.quarantine.store import QuarantineItem, QuarantineStore

__all__ = ["QuarantineItem", "QuarantineStore"]

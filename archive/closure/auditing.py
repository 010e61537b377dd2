"""Hashes in audit records.

The audit log refuses any run of ten digits (it looks like an NHS number), and a
SHA-256 in hex often holds one. Hashes are therefore audited in groups of eight hex
digits joined by ':' - the same value, readable and comparable, never a 10-digit run.
"""

from __future__ import annotations


def hash_for_audit(hex_digest: str) -> str:
    """'ab12...' -> 'ab12cd34:...' (groups of 8); `audit_hash_value` reverses it."""
    h = hex_digest.strip().lower()
    return ":".join(h[i : i + 8] for i in range(0, len(h), 8))


def audit_hash_value(audited: str) -> str:
    """The plain hex digest back from its audited form."""
    return audited.replace(":", "")

"""Tamper-evident audit log: every decision leaves a trace nobody can quietly edit.

Use:

    from archive.audit import AuditEvent, AuditLog, audit_log_for
    log = audit_log_for(config.home)            # HOME/data/audit
    log.append(AuditEvent("case.edit", "success", actor="jsmith", target="NSR-000123"))

`append` raises AuditError when the event is refused or cannot be written; the caller
must then refuse the action (fail closed). Pass only pseudonymous ids.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from archive.audit.events import OUTCOMES, AuditError, AuditEvent, check_event
from archive.audit.log import AuditLog, read_head, read_public_keys
from archive.audit.query import query, to_csv, to_json
from archive.audit.verify import VerifyReport, verify
from archive.paths import HomePaths

__all__ = [
    "OUTCOMES",
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "VerifyReport",
    "audit_log_for",
    "check_event",
    "query",
    "read_head",
    "read_public_keys",
    "to_csv",
    "to_json",
    "verify",
]


def audit_log_for(
    home: HomePaths, signer: Ed25519PrivateKey | None = None, checkpoint_every: int = 100
) -> AuditLog:
    """The home's audit log (HOME/data/audit)."""
    return AuditLog(home.audit_dir, signer=signer, checkpoint_every=checkpoint_every)

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

from archive.audit.anchor import DbAnchor, pin_public_key, read_pin
from archive.audit.events import OUTCOMES, AuditError, AuditEvent, check_event
from archive.audit.log import AuditLog, public_key_bytes, read_head, read_public_keys
from archive.audit.query import query, to_csv, to_json
from archive.audit.verify import VerifyReport, verify, verify_home
from archive.paths import HomePaths

__all__ = [
    "OUTCOMES",
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "VerifyReport",
    "audit_log_for",
    "audit_source",
    "home_chain",
    "check_event",
    "home_anchor",
    "pin_public_key",
    "query",
    "read_head",
    "read_pin",
    "read_public_keys",
    "to_csv",
    "to_json",
    "verify",
    "verify_home",
]


def _config(home: HomePaths):  # -> ArchiveConfig | None
    if not home.config_file.is_file():
        return None  # a bare directory (tests, a copied log): no database to anchor in
    from archive.config import load_config  # noqa: PLC0415 - config imports rooms lazily

    return load_config(home.root)


def home_anchor(home: HomePaths) -> DbAnchor | None:
    """The audit log's anchor row in the home's archive database (None: not a home)."""
    config = _config(home)
    if config is None:
        return None
    from archive import db  # noqa: PLC0415

    return DbAnchor(lambda: db.open_database(config))


def home_chain(home: HomePaths):  # -> PgChain | None
    """The chain in the archive database when the archive is on PostgreSQL (FORMAT.md
    section 8); None for a SQLite home (the chain is HOME/data/audit/audit.jsonl)."""
    config = _config(home)
    if config is None or not config.database.shared:
        return None
    from archive import db  # noqa: PLC0415
    from archive.audit.pgchain import PgChain  # noqa: PLC0415

    return PgChain(lambda: db.open_database(config), home.audit_dir)


def audit_source(home: HomePaths):  # -> Path | PgChain
    """Where the home's chain is read from: HOME/data/audit, or the database's chain."""
    return home_chain(home) or home.audit_dir


def audit_log_for(
    home: HomePaths,
    signer: Ed25519PrivateKey | None = None,
    checkpoint_every: int | None = None,
) -> AuditLog:
    """The home's audit log (HOME/data/audit), anchored in the home's archive database.

    With `signer` (the keyring's audit key) every record is signed, checkpoints follow
    the home's [audit] settings, and the key is pinned in HOME/keys if nothing is pinned
    yet (AuditError if another key is: FORMAT.md section 2)."""
    config = _config(home)
    every = checkpoint_every or (config.audit.checkpoint_every if config else 100)
    minutes = config.audit.checkpoint_minutes if config else 0.0
    if signer is not None and config is not None:
        pin_public_key(home.keys_dir, public_key_bytes(signer))
    if config is not None and config.database.shared:
        from archive import db  # noqa: PLC0415
        from archive.audit.pgchain import PgAuditLog  # noqa: PLC0415

        return PgAuditLog(
            home.audit_dir,
            lambda: db.open_database(config),
            signer=signer,
            checkpoint_every=every,
            checkpoint_minutes=minutes,
        )
    return AuditLog(
        home.audit_dir,
        signer=signer,
        checkpoint_every=every,
        anchor=home_anchor(home),
        checkpoint_minutes=minutes,
    )

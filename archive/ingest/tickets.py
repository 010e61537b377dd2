"""One-time release tickets: the only way a reviewed instance enters Orthanc as it is.

A quarantine release must store the reviewed, already de-identified bytes without a
second de-identification (which would re-hash the UIDs). The release route mints a
ticket for exactly those bytes, then posts them to Orthanc from inside the plugin
(origin PLUGIN); the ingest service stores a PLUGIN instance unchanged only if it can
redeem a ticket for its SOP Instance UID and the SHA-256 of its bytes. A ticket is an
HMAC under a key derived from the keyring, recorded in the database, single use and
short-lived. A transfer import (issue 25) mints `import:` tickets the same way for the
already de-identified instances of a verified package and uploads them by REST; a REST
upload redeems only such a ticket. Anything else (REST or PLUGIN without a ticket,
C-STORE) is de-identified.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from archive import db

TICKET_LIFETIME = timedelta(minutes=5)
_INFO = b"teaching-archive quarantine release ticket v1"

SCHEMA = [
    """
    CREATE TABLE ingest_release_tickets (
        nonce TEXT PRIMARY KEY,
        item_id TEXT NOT NULL,
        sop_uid TEXT NOT NULL,
        digest TEXT NOT NULL,
        mac TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
    );
    CREATE INDEX ingest_release_tickets_sop ON ingest_release_tickets (sop_uid);
    """
]


def derive_ticket_key(root_key: bytes) -> bytes:
    """A key for tickets only, derived (HKDF-SHA256) from a keyring secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(root_key)


def _mac(key: bytes, nonce: str, item_id: str, sop_uid: str, digest: str) -> str:
    message = "\x1f".join(("v1", nonce, item_id, sop_uid, digest)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _ensure(conn: sqlite3.Connection) -> None:
    db.migrate(conn, "ingest_tickets", SCHEMA)


def mint(
    conn: sqlite3.Connection,
    key: bytes,
    *,
    item_id: str,
    sop_uid: str,
    data: bytes,
    reviewer: str,
    now: datetime | None = None,
) -> str:
    """Record a ticket for exactly ``data``; returns its nonce (for the audit trail)."""
    _ensure(conn)
    now = now or datetime.now(UTC)
    nonce = secrets.token_hex(16)
    digest = hashlib.sha256(data).hexdigest()
    conn.execute(
        "INSERT INTO ingest_release_tickets (nonce, item_id, sop_uid, digest, mac, reviewer,"
        " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            nonce,
            item_id,
            sop_uid,
            digest,
            _mac(key, nonce, item_id, sop_uid, digest),
            reviewer,
            now.isoformat(),
            (now + TICKET_LIFETIME).isoformat(),
        ),
    )
    return nonce


IMPORT_PREFIX = "import:"  # tickets minted by a transfer import (archive/transfer)


def redeem(
    conn: sqlite3.Connection,
    key: bytes,
    *,
    sop_uid: str,
    data: bytes,
    now: datetime | None = None,
    imports_only: bool = False,
) -> str | None:
    """Use the ticket for these bytes once; the item id it was minted for, or None.
    `imports_only`: only a transfer import's ticket (a REST upload may redeem no other)."""
    _ensure(conn)
    now = now or datetime.now(UTC)
    rows = conn.execute(
        "SELECT nonce, item_id, mac, expires_at, digest FROM ingest_release_tickets"
        " WHERE sop_uid = ? AND used_at IS NULL",
        (sop_uid,),
    ).fetchall()
    if not rows:  # the usual case for an upload: no hash of the whole file
        return None
    digest = hashlib.sha256(data).hexdigest()
    rows = [r for r in rows if r["digest"] == digest]
    if imports_only:
        rows = [r for r in rows if str(r["item_id"]).startswith(IMPORT_PREFIX)]
    for row in rows:
        if datetime.fromisoformat(row["expires_at"]) < now:
            continue
        want = _mac(key, row["nonce"], row["item_id"], sop_uid, digest)
        if not hmac.compare_digest(want, row["mac"]):
            continue
        cursor = conn.execute(
            "UPDATE ingest_release_tickets SET used_at = ? WHERE nonce = ? AND used_at IS NULL",
            (now.isoformat(), row["nonce"]),
        )
        if cursor.rowcount == 1:  # single use, even with two racing redeemers
            return row["item_id"]
    return None


def was_redeemed(conn: sqlite3.Connection, nonce: str) -> bool:
    _ensure(conn)
    row = conn.execute(
        "SELECT used_at FROM ingest_release_tickets WHERE nonce = ?", (nonce,)
    ).fetchone()
    return row is not None and row["used_at"] is not None

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
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Column, Index, MetaData, Table, Text, insert, select, update

from archive import db

TICKET_LIFETIME = timedelta(minutes=5)
_INFO = b"teaching-archive quarantine release ticket v1"

metadata = MetaData()
tickets = Table(
    "ingest_release_tickets",
    metadata,
    Column("nonce", Text, primary_key=True),
    Column("item_id", Text, nullable=False),
    Column("sop_uid", Text, nullable=False),
    Column("digest", Text, nullable=False),
    Column("mac", Text, nullable=False),
    Column("reviewer", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("used_at", Text),
)
Index("ingest_release_tickets_sop", tickets.c.sop_uid)
# Homes made before issue 27 ran step 1 as the equivalent SQL script.
SCHEMA = [db.create_tables(metadata, [tickets])]


def derive_ticket_key(root_key: bytes) -> bytes:
    """A key for tickets only, derived (HKDF-SHA256) from a keyring secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(root_key)


def _mac(key: bytes, nonce: str, item_id: str, sop_uid: str, digest: str) -> str:
    message = "\x1f".join(("v1", nonce, item_id, sop_uid, digest)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _ensure(conn: Any) -> None:
    db.migrate(conn, "ingest_tickets", SCHEMA)


def mint(
    conn: Any,
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
        insert(tickets).values(
            nonce=nonce,
            item_id=item_id,
            sop_uid=sop_uid,
            digest=digest,
            mac=_mac(key, nonce, item_id, sop_uid, digest),
            reviewer=reviewer,
            created_at=now.isoformat(),
            expires_at=(now + TICKET_LIFETIME).isoformat(),
        )
    )
    return nonce


IMPORT_PREFIX = "import:"  # tickets minted by a transfer import (archive/transfer)


def redeem(
    conn: Any,
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
    t = tickets.c
    rows = conn.execute(
        select(t.nonce, t.item_id, t.mac, t.expires_at, t.digest).where(
            t.sop_uid == sop_uid, t.used_at.is_(None)
        )
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
            update(tickets)
            .where(t.nonce == row["nonce"], t.used_at.is_(None))
            .values(used_at=now.isoformat())
        )
        if cursor.rowcount == 1:  # single use, even with two racing redeemers
            return row["item_id"]
    return None


def was_redeemed(conn: Any, nonce: str) -> bool:
    _ensure(conn)
    row = conn.execute(select(tickets.c.used_at).where(tickets.c.nonce == nonce)).fetchone()
    return row is not None and row["used_at"] is not None

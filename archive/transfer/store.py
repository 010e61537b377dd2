"""The transfer room's tables: registered peers, packages made, imports, receipts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from archive import db
from archive.errors import ArchiveError
from archive.transfer.keys import fingerprint, public_key_from_hex
from archive.transfer.package import Peer

SCHEMA = [
    """
    CREATE TABLE transfer_peers (
        fingerprint TEXT PRIMARY KEY,
        organisation TEXT NOT NULL,
        signing_key TEXT NOT NULL,
        added_by TEXT NOT NULL,
        added_at TEXT NOT NULL
    );
    CREATE TABLE transfer_packages (
        envelope_sha256 TEXT PRIMARY KEY,
        transfer_id INTEGER NOT NULL,
        manifest_sha256 TEXT NOT NULL,
        organisation TEXT NOT NULL,
        rows_json TEXT NOT NULL,
        made_by TEXT NOT NULL,
        made_at TEXT NOT NULL
    );
    CREATE TABLE transfer_receipts (
        receipt_sha256 TEXT PRIMARY KEY,
        transfer_id INTEGER NOT NULL,
        envelope_sha256 TEXT NOT NULL,
        signer_fingerprint TEXT NOT NULL,
        organisation TEXT NOT NULL,
        stored INTEGER NOT NULL,
        held INTEGER NOT NULL,
        statement TEXT NOT NULL,
        mapping_json TEXT NOT NULL,
        verified_by TEXT NOT NULL,
        verified_at TEXT NOT NULL
    );
    CREATE TABLE transfer_imports (
        envelope_sha256 TEXT NOT NULL,
        sender_fingerprint TEXT NOT NULL,
        sender_case_id TEXT NOT NULL,
        case_id TEXT NOT NULL,
        sop_instance_uid TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT NOT NULL,
        review TEXT NOT NULL DEFAULT '',
        imported_by TEXT NOT NULL,
        imported_at TEXT NOT NULL,
        PRIMARY KEY (envelope_sha256, sop_instance_uid)
    );
    """
]


def ensure_schema(conn: Any) -> None:
    db.migrate(conn, "transfer", SCHEMA)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def add_peer(conn: Any, organisation: str, signing_key_hex: str, by: str) -> Peer:
    """Register (or rename) a peer by its key; one organisation keeps one key."""
    organisation = " ".join((organisation or "").split())
    if not organisation or len(organisation) > 300:
        raise ArchiveError("give the other archive's organisation name (at most 300 characters).")
    try:
        key = signing_key_hex.strip().lower()
        public_key_from_hex(key)
    except ValueError:
        raise ArchiveError(
            "the signing key must be 64 hex digits, as `archive transfer identity` prints it "
            "on the other archive."
        ) from None
    peer = Peer(organisation, key, fingerprint(bytes.fromhex(key)))
    ensure_schema(conn)
    same = [
        p for p in peers(conn) if p.organisation.casefold() == organisation.casefold()
    ]  # fmt: skip
    for old in same:  # a new key for an organisation replaces its old one
        if old.fingerprint != peer.fingerprint:
            conn.execute("DELETE FROM transfer_peers WHERE fingerprint = ?", (old.fingerprint,))
    conn.execute(
        "INSERT INTO transfer_peers (fingerprint, organisation, signing_key, added_by,"
        " added_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET"
        " organisation = excluded.organisation, added_by = excluded.added_by,"
        " added_at = excluded.added_at",
        (peer.fingerprint, peer.organisation, peer.signing_key, by, _now()),
    )
    return peer


def peers(conn: Any) -> list[Peer]:
    ensure_schema(conn)
    rows = conn.execute(
        "SELECT organisation, signing_key, fingerprint FROM transfer_peers ORDER BY organisation"
    ).fetchall()
    return [Peer(r[0], r[1], r[2]) for r in rows]


def peer_for(conn: Any, organisation: str) -> Peer | None:
    wanted = " ".join(organisation.split()).casefold()
    return next((p for p in peers(conn) if p.organisation.casefold() == wanted), None)


def record_package(conn: Any, written, transfer_id: int, organisation: str, by: str) -> None:
    conn.execute(
        "INSERT INTO transfer_packages (envelope_sha256, transfer_id, manifest_sha256,"
        " organisation, rows_json, made_by, made_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            written.envelope_sha256,
            int(transfer_id),
            written.manifest_sha256,
            organisation,
            json.dumps(written.rows),
            by,
            _now(),
        ),
    )


def package_for(conn: Any, envelope_sha256: str) -> dict | None:
    ensure_schema(conn)
    row = conn.execute(
        "SELECT envelope_sha256, transfer_id, manifest_sha256, organisation, rows_json"
        " FROM transfer_packages WHERE envelope_sha256 = ?",
        (envelope_sha256,),
    ).fetchone()
    if row is None:
        return None
    return {
        "envelope_sha256": row[0],
        "transfer_id": row[1],
        "manifest_sha256": row[2],
        "organisation": row[3],
        "rows": [tuple(r) for r in json.loads(row[4])],
    }


def record_receipt(conn: Any, verified, transfer_id: int, organisation: str, by: str) -> None:
    mapping = {
        "cases": verified.body.get("cases", {}),
        "collections": verified.body.get("collections", {}),
    }
    conn.execute(
        "INSERT INTO transfer_receipts (receipt_sha256, transfer_id, envelope_sha256,"
        " signer_fingerprint, organisation, stored, held, statement, mapping_json, verified_by,"
        " verified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (receipt_sha256)"
        " DO UPDATE SET verified_by = excluded.verified_by, verified_at = excluded.verified_at",
        (
            verified.receipt_sha256,
            int(transfer_id),
            verified.body["envelope_sha256"],
            verified.signer.fingerprint,
            organisation,
            verified.stored,
            len(verified.held),
            verified.statement(organisation),
            json.dumps(mapping, sort_keys=True),
            by,
            _now(),
        ),
    )


def verified_receipt_statement(conn: Any, transfer_id: int | None = None) -> str | None:
    """What the latest verified signed receipt says (of `transfer_id`, or of any
    transfer), for the closure certificate; None when no receipt was verified."""
    try:
        ensure_schema(conn)
        sql = "SELECT statement FROM transfer_receipts"
        args: tuple = ()
        if transfer_id is not None:
            sql += " WHERE transfer_id = ?"
            args = (int(transfer_id),)
        row = conn.execute(sql + " ORDER BY verified_at DESC LIMIT 1", args).fetchone()
    except Exception:  # noqa: BLE001 - no table, no statement: the certificate says so
        return None
    return None if row is None else str(row[0])


def case_mapping(conn: Any) -> list[dict]:
    """Every imported instance with its sender and receiver case ids (receiver side)."""
    ensure_schema(conn)
    rows = conn.execute(
        "SELECT sender_fingerprint, sender_case_id, case_id, sop_instance_uid, outcome, reason,"
        " review FROM transfer_imports ORDER BY imported_at, sender_case_id"
    ).fetchall()
    keys = ("sender_fingerprint", "sender_case_id", "case_id", "sop_instance_uid", "outcome")
    out = [dict(zip((*keys, "reason", "review"), r, strict=True)) for r in rows]
    for row in out:  # the sender's review outcome, kept as it came
        row["review"] = json.loads(row["review"]) if row["review"] else None
    return out

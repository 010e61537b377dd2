"""The transfer room's tables: registered peers, packages made, imports, receipts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text, delete, insert, select

from archive import db
from archive.errors import ArchiveError
from archive.transfer.keys import fingerprint, public_key_from_hex
from archive.transfer.package import Peer

metadata = MetaData()
Int = BigInteger().with_variant(Integer(), "sqlite")


def _text(name: str, **kw: Any) -> Column:
    return Column(name, Text, nullable=False, **kw)


peers_table = Table(
    "transfer_peers",
    metadata,
    _text("fingerprint", primary_key=True),
    _text("organisation"),
    _text("signing_key"),
    _text("added_by"),
    _text("added_at"),
)
packages = Table(
    "transfer_packages",
    metadata,
    _text("envelope_sha256", primary_key=True),
    Column("transfer_id", Int, nullable=False),
    _text("manifest_sha256"),
    _text("organisation"),
    _text("rows_json"),
    _text("made_by"),
    _text("made_at"),
)
receipts = Table(
    "transfer_receipts",
    metadata,
    _text("receipt_sha256", primary_key=True),
    Column("transfer_id", Int, nullable=False),
    _text("envelope_sha256"),
    _text("signer_fingerprint"),
    _text("organisation"),
    Column("stored", Int, nullable=False),
    Column("held", Int, nullable=False),
    _text("statement"),
    _text("mapping_json"),
    _text("verified_by"),
    _text("verified_at"),
)
imports = Table(
    "transfer_imports",
    metadata,
    _text("envelope_sha256", primary_key=True),
    _text("sender_fingerprint"),
    _text("sender_case_id"),
    _text("case_id"),
    _text("sop_instance_uid", primary_key=True),
    _text("sha256"),
    _text("outcome"),
    _text("reason"),
    _text("review", server_default=""),
    _text("imported_by"),
    _text("imported_at"),
)

# Homes made before issue 27 ran step 1 as the equivalent SQL script.
SCHEMA = [db.create_tables(metadata, [peers_table, packages, receipts, imports])]


def _upsert(conn: Any, table: Table, values: dict[str, Any], keys: list[str], update: list[str]):
    statement = db.dialect_insert(conn, table).values(values)
    return statement.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={name: statement.excluded[name] for name in update},
    )


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
            conn.execute(delete(peers_table).where(peers_table.c.fingerprint == old.fingerprint))
    values = {
        "fingerprint": peer.fingerprint,
        "organisation": peer.organisation,
        "signing_key": peer.signing_key,
        "added_by": by,
        "added_at": _now(),
    }
    conn.execute(
        _upsert(
            conn,
            peers_table,
            values,
            ["fingerprint"],
            ["organisation", "added_by", "added_at"],
        )
    )
    return peer


def peers(conn: Any) -> list[Peer]:
    ensure_schema(conn)
    rows = conn.execute(
        select(
            peers_table.c.organisation, peers_table.c.signing_key, peers_table.c.fingerprint
        ).order_by(peers_table.c.organisation)
    ).fetchall()
    return [Peer(r[0], r[1], r[2]) for r in rows]


def peer_for(conn: Any, organisation: str) -> Peer | None:
    wanted = " ".join(organisation.split()).casefold()
    return next((p for p in peers(conn) if p.organisation.casefold() == wanted), None)


def record_package(conn: Any, written, transfer_id: int, organisation: str, by: str) -> None:
    conn.execute(
        insert(packages).values(
            envelope_sha256=written.envelope_sha256,
            transfer_id=int(transfer_id),
            manifest_sha256=written.manifest_sha256,
            organisation=organisation,
            rows_json=json.dumps(written.rows),
            made_by=by,
            made_at=_now(),
        )
    )


def package_for(conn: Any, envelope_sha256: str) -> dict | None:
    ensure_schema(conn)
    row = conn.execute(
        select(
            packages.c.envelope_sha256,
            packages.c.transfer_id,
            packages.c.manifest_sha256,
            packages.c.organisation,
            packages.c.rows_json,
        ).where(packages.c.envelope_sha256 == envelope_sha256)
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
    values = {
        "receipt_sha256": verified.receipt_sha256,
        "transfer_id": int(transfer_id),
        "envelope_sha256": verified.body["envelope_sha256"],
        "signer_fingerprint": verified.signer.fingerprint,
        "organisation": organisation,
        "stored": verified.stored,
        "held": len(verified.held),
        "statement": verified.statement(organisation),
        "mapping_json": json.dumps(mapping, sort_keys=True),
        "verified_by": by,
        "verified_at": _now(),
    }
    conn.execute(
        _upsert(conn, receipts, values, ["receipt_sha256"], ["verified_by", "verified_at"])
    )


def record_import(conn: Any, values: dict[str, Any]) -> None:
    """One imported instance (receiver side), replaced when the same package is
    imported again."""
    kept = ["envelope_sha256", "sender_fingerprint", "sender_case_id", "sop_instance_uid"]
    update = [c.name for c in imports.columns if c.name not in kept]
    conn.execute(_upsert(conn, imports, values, ["envelope_sha256", "sop_instance_uid"], update))


def verified_receipt_statement(conn: Any, transfer_id: int | None = None) -> str | None:
    """What the latest verified signed receipt says (of `transfer_id`, or of any
    transfer), for the closure certificate; None when no receipt was verified."""
    try:
        ensure_schema(conn)
        statement = select(receipts.c.statement).order_by(receipts.c.verified_at.desc()).limit(1)
        if transfer_id is not None:
            statement = statement.where(receipts.c.transfer_id == int(transfer_id))
        row = conn.execute(statement).fetchone()
    except Exception:  # noqa: BLE001 - no table, no statement: the certificate says so
        return None
    return None if row is None else str(row[0])


def case_mapping(conn: Any) -> list[dict]:
    """Every imported instance with its sender and receiver case ids (receiver side)."""
    ensure_schema(conn)
    rows = conn.execute(
        select(
            imports.c.sender_fingerprint,
            imports.c.sender_case_id,
            imports.c.case_id,
            imports.c.sop_instance_uid,
            imports.c.outcome,
            imports.c.reason,
            imports.c.review,
        ).order_by(imports.c.imported_at, imports.c.sender_case_id)
    ).fetchall()
    keys = ("sender_fingerprint", "sender_case_id", "case_id", "sop_instance_uid", "outcome")
    out = [dict(zip((*keys, "reason", "review"), r, strict=True)) for r in rows]
    for row in out:  # the sender's review outcome, kept as it came
        row["review"] = json.loads(row["review"]) if row["review"] else None
    return out

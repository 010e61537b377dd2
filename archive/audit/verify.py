"""Verification of the audit log: every edit, deletion, reordering and truncation, located.

Checks, each reported with the line number (1-based) and seq where it happens:
- each line is a complete JSON record whose `hash` matches its content (edited byte);
- seqs run 1, 2, 3, ... in file order (deleted lines, reordered lines, duplicates);
- each record's `prev` is the stored hash of the record with seq - 1 (a record edited
  and re-hashed breaks the link of its successor);
- each checkpoint covers its predecessor and carries a valid Ed25519 signature by a
  trusted key;
- the head file agrees with the last line (end cut off, or records appended behind
  the archive's back);
- (format v2, FORMAT.md section 5) every record's signature is by a trusted key, the
  log exists and ends where the archive database's anchor says, and records past the
  head or the anchor are signed.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from archive.audit.anchor import Anchor, DbAnchor, pin_path, read_pin
from archive.audit.events import AuditError
from archive.audit.log import (
    CHECKPOINT_ACTION,
    GENESIS,
    HEAD_NAME,
    LOG_NAME,
    RECORD_FIELDS,
    RECORD_FIELDS_V1,
    checkpoint_message,
    key_id,
    read_head,
    read_public_keys,
    record_hash,
    record_message,
)
from archive.audit.log import public_key_bytes as _raw


@dataclass
class VerifyReport:
    ok: bool
    records: int
    problems: list[str]
    checkpoints: int = 0
    last_seq: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "last_seq": self.last_seq,
            "problems": list(self.problems),
            "notes": list(self.notes),
        }


PublicKeys = Ed25519PublicKey | bytes | list[bytes] | None


def _trusted_keys(
    directory: Path, public_key: PublicKeys, problems: list[str], key_file: bool = True
) -> tuple[dict[str, Ed25519PublicKey], list[str]]:
    notes: list[str] = []
    try:
        stored = read_public_keys(directory) if key_file else []
    except AuditError as exc:
        problems.append(str(exc))
        stored = []
    if public_key is not None:
        given = public_key if isinstance(public_key, list) else [public_key]
        raws = [k if isinstance(k, bytes) else _raw(k) for k in given]
        for raw in raws:
            if len(raw) != 32:
                raise AuditError("the audit public key must be 32 raw bytes (Ed25519).")
        if stored and not set(raws) & set(stored):
            problems.append(
                "public_key file does not list the given (keyring) key: it was replaced "
                "or the signing key was rotated without publishing it."
            )
        return {key_id(raw): Ed25519PublicKey.from_public_bytes(raw) for raw in raws}, notes
    if stored:
        notes.append(
            "checkpoints verified with the public_key file next to the log; anyone able to "
            "rewrite the log could replace it too: verify with the keyring key for assurance."
        )
    return {key_id(k): Ed25519PublicKey.from_public_bytes(k) for k in stored}, notes


def _parse(raw: bytes) -> dict[str, Any] | str:
    """A record, or the reason the line is not one."""
    try:
        record = json.loads(raw)
    except ValueError:
        return "not valid JSON (edited or torn)"
    if not isinstance(record, dict) or (
        set(record) != set(RECORD_FIELDS) and set(record) != set(RECORD_FIELDS_V1)
    ):
        return "not an audit record (fields missing or added)"
    if "v" in record and record["v"] != 2:
        return f"unknown record format v={record['v']!r}"
    if "sig" in record and record["sig"] is not None and not isinstance(record["sig"], str):
        return "sig is neither null nor a string"
    if not isinstance(record["seq"], int) or isinstance(record["seq"], bool):
        return "seq is not an integer"
    if not isinstance(record["hash"], str) or not isinstance(record["prev"], str):
        return "hash/prev are not strings"
    return record


def _check_checkpoint(
    record: dict[str, Any], where: str, hashes: dict[int, str], keys: dict[str, Ed25519PublicKey]
) -> str | None:
    detail = record.get("detail") or {}
    covers_seq, covers_hash = detail.get("covers_seq"), detail.get("covers_hash")
    if covers_seq != record["seq"] - 1 or covers_hash != hashes.get(record["seq"] - 1, GENESIS):
        return f"{where}: checkpoint does not cover the record before it"
    key = keys.get(str(detail.get("key_id")))
    if key is None:
        return f"{where}: checkpoint signed by an unknown key {detail.get('key_id')!r}"
    try:
        key.verify(
            base64.b64decode(str(detail.get("signature")), validate=True),
            checkpoint_message(covers_seq, covers_hash),
        )
    except (InvalidSignature, ValueError):
        return f"{where}: checkpoint signature is invalid"
    return None


def _check_sig(record: dict[str, Any], where: str, keys: dict[str, Ed25519PublicKey]) -> str | None:
    kid, _, encoded = str(record["sig"]).partition(":")
    key = keys.get(kid)
    if key is None:
        return (
            f"{where}: signed by key {kid!r}, which is not the trusted (pinned) key: the "
            "log was rewritten and re-signed under another key, or the pin is wrong"
        )
    try:
        key.verify(base64.b64decode(encoded, validate=True), record_message(record["hash"]))
    except (InvalidSignature, ValueError):
        return f"{where}: record signature is invalid (forged or edited record)"
    return None


_NO_ANCHOR = object()


def verify(
    directory: Path | str,
    public_key: PublicKeys = None,
    *,
    anchor: DbAnchor | Anchor | None | object = _NO_ANCHOR,
    must_exist: bool = False,
    chain: Any = None,
) -> VerifyReport:
    """Check the whole log in `directory` (FORMAT.md section 5).

    `public_key`: the trusted key(s); None means the public_key file next to the log (a
    convenience only: `verify_home` passes the pin). `anchor`: the archive database's
    anchor (a DbAnchor to read, the Anchor read, or None when the database has no row);
    left out, the database is not consulted. `must_exist`: the log must hold records
    (something outside it, such as a pin, says the archive has written it). `chain`: a
    PgChain (the chain in the archive database, FORMAT.md section 8) read instead of
    the file; its head row is the head, `directory`'s head.json this node's tripwire."""
    directory = Path(directory)
    problems: list[str] = []
    head: Any = None
    if chain is not None:  # the chain in the archive database (FORMAT.md section 8)
        keys, notes = _trusted_keys(directory, public_key, problems, key_file=False)
        try:
            read = chain.read()
        except Exception as exc:  # noqa: BLE001 - driver or archive errors alike
            problems.append(f"the audit chain cannot be read from the archive database ({exc})")
            return VerifyReport(ok=False, records=0, problems=problems)
        lines, torn, head = list(read.lines), b"", read.head
        problems.extend(read.problems)
    else:
        keys, notes = _trusted_keys(directory, public_key, problems)
        try:
            data = (directory / LOG_NAME).read_bytes()
        except FileNotFoundError:
            data = b""
        lines = data.split(b"\n")
        torn = lines.pop()  # b"" when the file ends with a newline, as it must
        if torn:
            problems.append(
                f"line {len(lines) + 1}: incomplete last record (no newline; torn write)"
            )

    parsed: list[tuple[int, dict[str, Any]]] = []
    for number, raw in enumerate(lines, start=1):
        result = _parse(raw)
        if isinstance(result, str):
            problems.append(f"line {number}: {result}")
        else:
            parsed.append((number, result))
    first_line_of: dict[int, int] = {}
    for number, record in parsed:
        first_line_of.setdefault(record["seq"], number)
    hashes: dict[int, str] = {}
    for _, record in parsed:
        hashes.setdefault(record["seq"], record["hash"])

    previous_seq = 0
    checkpoints = 0
    last_checkpoint = 0
    last_signed = 0
    signed_ok: set[int] = set()
    seen_v2 = False
    for number, record in parsed:
        seq = record["seq"]
        where = f"line {number} (seq {seq})"
        hash_ok = record_hash(record) == record["hash"]
        if not hash_ok:
            problems.append(f"{where}: record edited (its hash does not match its content)")
        if "v" in record:
            seen_v2 = True
        elif seen_v2:
            problems.append(f"{where}: old-format (v1) record after v2 records (forged)")
        if record.get("sig") is not None:
            problem = _check_sig(record, where, keys)
            if problem:
                problems.append(problem)
            elif hash_ok:
                signed_ok.add(seq)
                last_signed = max(last_signed, seq)
        expected = previous_seq + 1
        if seq > expected:
            later = first_line_of.get(expected)
            if later is not None and later > number:
                problems.append(
                    f"{where}: out of order, seq {expected} comes later at line {later} "
                    "(records reordered)"
                )
            else:
                missing = f"{expected}" if seq - 1 == expected else f"{expected}..{seq - 1}"
                problems.append(f"{where}: record(s) seq {missing} missing before it (deleted)")
        elif seq < expected:
            kind = "duplicated" if first_line_of[seq] != number else "reordered"
            problems.append(f"{where}: out of order after seq {previous_seq} (records {kind})")
        if seq == 1 and record["prev"] != GENESIS:
            problems.append(f"{where}: first record does not start the chain")
        elif seq > 1 and seq - 1 in hashes and record["prev"] != hashes[seq - 1]:
            problems.append(
                f"{where}: chain broken, prev does not match the hash of seq {seq - 1} "
                "(that record was edited and re-hashed, or this one was forged)"
            )
        if record.get("action") == CHECKPOINT_ACTION:
            problem = _check_checkpoint(record, where, hashes, keys)
            if problem:
                problems.append(problem)
            else:
                checkpoints += 1
                last_checkpoint = max(last_checkpoint, seq)
                last_signed = max(last_signed, seq)
        previous_seq = max(previous_seq, seq)

    last_seq = parsed[-1][1]["seq"] if parsed else 0
    last_line = parsed[-1][0] if parsed else 0
    if not parsed and not torn and (must_exist or (isinstance(anchor, Anchor) and anchor.seq)):
        why = "the pinned audit key" if must_exist else f"the database anchor (seq {anchor.seq})"
        where = chain if chain is not None else directory / LOG_NAME
        problems.append(
            f"the audit log {where} is missing or empty although {why} says "
            "the archive has written it: it was deleted or truncated; restore data/audit "
            "from a backup (archive backup restore) and keep this home for investigation"
        )

    def signed_after(start: int) -> bool:
        return all(s in signed_ok for s in range(start + 1, last_seq + 1))

    if chain is not None:
        _check_head(head, parsed, last_seq, last_line, keys, problems, signed_after, notes)
        _check_local_head(directory, hashes, last_seq, problems)
    else:
        _check_head(directory, parsed, last_seq, last_line, keys, problems, signed_after, notes)
    if anchor is not _NO_ANCHOR:
        _check_anchor(anchor, hashes, last_seq, seen_v2, signed_after, problems, notes)
    if checkpoints == 0 and parsed and not last_signed:
        notes.append("no signed checkpoint in the log: only the hash chain and head protect it.")
    elif last_signed and last_seq > last_signed:
        notes.append(
            f"{last_seq - last_signed} record(s) after the last signature (seq "
            f"{last_signed}) were written without the keyring: they are protected by the "
            "chain, the head file and the database anchor only, until the running archive's "
            "next checkpoint (or archive audit checkpoint) signs them."
        )
    return VerifyReport(
        ok=not problems,
        records=len(lines),
        problems=problems,
        checkpoints=checkpoints,
        last_seq=last_seq,
        notes=notes,
    )


def _check_anchor(
    anchor: Any,
    hashes: dict[int, str],
    last_seq: int,
    seen_v2: bool,
    signed_after: Any,
    problems: list[str],
    notes: list[str],
) -> None:
    """The log against the archive database's anchor row (FORMAT.md section 5, item 5)."""
    if isinstance(anchor, DbAnchor):
        try:
            anchor = anchor.read()
        except AuditError as exc:
            problems.append(str(exc))
            return
    if anchor is None:
        if seen_v2:
            problems.append(
                "the archive database has no anchor for this audit log although it holds "
                "v2 records: the anchor row was deleted, or the database replaced; restore "
                "the database and data/audit together from one backup"
            )
        elif last_seq:
            notes.append(
                "old-format (v1) log not yet anchored in the database: the next start of "
                "the archive upgrades it (FORMAT.md section 7)."
            )
        return
    restore = "restore data/audit and the database together from one backup"
    if anchor.seq > last_seq:
        first = last_seq + 1
        missing = f"{first}" if anchor.seq == first else f"{first}..{anchor.seq}"
        problems.append(
            f"records removed: the archive database's anchor records seq {anchor.seq} but the "
            f"log ends at seq {last_seq}; seq {missing} missing; {restore}"
        )
    elif anchor.seq and hashes.get(anchor.seq) != anchor.hash:
        problems.append(
            f"seq {anchor.seq} differs from the archive database's anchor: the log was "
            f"rewritten (records removed and the rest re-chained?); {restore}"
        )
    elif anchor.seq < last_seq:
        if signed_after(anchor.seq):
            notes.append(
                f"the database anchor stops at seq {anchor.seq}, the log at {last_seq} with "
                "every later record signed (a crash between writing and anchoring): the next "
                "append updates the anchor."
            )
        else:
            problems.append(
                f"records after seq {anchor.seq} (up to seq {last_seq}) are not confirmed by "
                "the archive database's anchor and not all signed: appended outside the "
                "archive (forged); check them with archive audit show, then " + restore
            )


def _check_local_head(
    directory: Path, hashes: dict[int, str], last_seq: int, problems: list[str]
) -> None:
    """This node's head.json against the chain in the database (FORMAT.md section 8)."""
    try:
        local = read_head(directory)
    except AuditError as exc:
        problems.append(str(exc))
        return
    if local is None:
        return
    if local.seq > last_seq:
        problems.append(
            f"records removed: this node committed seq {local.seq} (its {directory / HEAD_NAME}) "
            f"but the chain in the database ends at seq {last_seq}; restore the database "
            "from a backup and keep this home for investigation"
        )
    elif local.seq and hashes.get(local.seq) != local.hash:
        problems.append(
            f"seq {local.seq} differs from what this node committed (its "
            f"{directory / HEAD_NAME}): the chain was rewritten in the database"
        )


def _check_head(
    directory: Path | Any,
    parsed: list[tuple[int, dict[str, Any]]],
    last_seq: int,
    last_line: int,
    keys: dict[str, Ed25519PublicKey],
    problems: list[str],
    signed_after: Any = None,
    notes: list[str] | None = None,
) -> None:
    if isinstance(directory, Path):
        try:
            head = read_head(directory)
        except AuditError as exc:
            problems.append(str(exc))
            return
    else:
        head = directory  # the head row of the chain in the database (a Head or None)
    if head is None:
        if parsed:
            problems.append("head file missing: truncation of the end cannot be ruled out")
        return
    ends = f"the log ends at line {last_line} (seq {last_seq})" if parsed else "the log is empty"
    if head.seq > last_seq:
        proof = ""
        cp = head.checkpoint or {}
        if (
            isinstance(cp.get("seq"), int)
            and cp["seq"] > last_seq
            and str(cp.get("key_id")) in keys
        ):
            try:
                keys[str(cp["key_id"])].verify(
                    base64.b64decode(str(cp.get("signature")), validate=True),
                    checkpoint_message(cp.get("covers_seq"), str(cp.get("covers_hash"))),
                )
                proof = f"; a signed checkpoint at seq {cp['seq']} confirms it"
            except (InvalidSignature, ValueError):
                pass
        missing = f"{last_seq + 1}" if head.seq == last_seq + 1 else f"{last_seq + 1}..{head.seq}"
        problems.append(
            f"end cut off: {ends} but the head records seq {head.seq}; seq {missing} missing{proof}"
        )
    elif head.seq == last_seq and parsed and parsed[-1][1]["hash"] != head.hash:
        problems.append(f"line {last_line} (seq {last_seq}): last record does not match the head")
    elif head.seq < last_seq and signed_after is not None and signed_after(head.seq):
        if notes is not None:
            notes.append(
                f"the head file stops at seq {head.seq}, the log at {last_seq} with every "
                "later record signed (a crash between writing and updating the head)."
            )
    elif head.seq < last_seq:
        problems.append(
            f"records after seq {head.seq} (up to line {last_line}, seq {last_seq}) are not "
            "confirmed by the head file (appended outside the archive, or a crash mid-append)"
        )


def _has_written(home: Any) -> bool:
    """Has this home stored anything (its database or Orthanc's index)? Then it has
    audited too, so an empty log means a deleted one."""
    index = Path(home.index_dir)
    return Path(home.db_path).exists() or (index.is_dir() and any(index.iterdir()))


def verify_home(home: Any, public_key: PublicKeys = None) -> VerifyReport:
    """Verify a home's log against its trust root and its database anchor.

    Trust root: `public_key` (an off-site copy or the keyring's key) if given, else the
    pin in HOME/keys. With neither, a home that has a keyring fails (nothing trusted to
    check signatures against); a home without a keyring falls back to the public_key
    file next to the log, with a note (FORMAT.md section 5)."""
    from archive.audit import home_anchor, home_chain  # noqa: PLC0415 - package helpers

    problems: list[str] = []
    try:
        pinned = read_pin(home.keys_dir)
    except AuditError as exc:
        pinned, problems = [], [str(exc)]
    keys: PublicKeys = public_key if public_key is not None else (pinned or None)
    if keys is None and (Path(home.keys_dir) / "keyring.json").exists():
        problems.append(
            f"no audit public key pinned at {pin_path(home.keys_dir)}: run archive audit "
            "verify --keyring once (it pins the keyring's key), or give --public-key"
        )
    chain = home_chain(home)
    try:
        anchor: Any = None if chain is not None else home_anchor(home)
    except Exception as exc:  # noqa: BLE001 - a config the CLI loaded already; be safe
        anchor = _NO_ANCHOR
        problems.append(f"the archive database cannot be opened ({type(exc).__name__})")
    try:
        report = verify(
            home.audit_dir,
            keys,
            anchor=_NO_ANCHOR if anchor is None else anchor,
            # On PostgreSQL: this node committed records (its head.json), so an empty
            # chain means deleted rows; a chain nobody wrote yet is empty and fine.
            must_exist=bool(pinned)
            and (
                (Path(home.audit_dir) / HEAD_NAME).is_file()
                if chain is not None
                else _has_written(home)
            ),
            chain=chain,
        )
    finally:
        if isinstance(anchor, DbAnchor):
            anchor.close()
    if problems:
        report.problems[:0] = problems
        report.ok = False
    return report

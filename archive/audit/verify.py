"""Verification of the audit log: every edit, deletion, reordering and truncation, located.

Checks, each reported with the line number (1-based) and seq where it happens:
- each line is a complete JSON record whose `hash` matches its content (edited byte);
- seqs run 1, 2, 3, ... in file order (deleted lines, reordered lines, duplicates);
- each record's `prev` is the stored hash of the record with seq - 1 (a record edited
  and re-hashed breaks the link of its successor);
- each checkpoint covers its predecessor and carries a valid Ed25519 signature by a
  trusted key;
- the head file agrees with the last line (end cut off, or records appended behind
  the archive's back).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from archive.audit.events import AuditError
from archive.audit.log import (
    CHECKPOINT_ACTION,
    GENESIS,
    LOG_NAME,
    RECORD_FIELDS,
    checkpoint_message,
    key_id,
    read_head,
    read_public_keys,
    record_hash,
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


def _trusted_keys(
    directory: Path, public_key: Ed25519PublicKey | bytes | None, problems: list[str]
) -> tuple[dict[str, Ed25519PublicKey], list[str]]:
    notes: list[str] = []
    try:
        stored = read_public_keys(directory)
    except AuditError as exc:
        problems.append(str(exc))
        stored = []
    if public_key is not None:
        raw = public_key if isinstance(public_key, bytes) else _raw(public_key)
        if len(raw) != 32:
            raise AuditError("the audit public key must be 32 raw bytes (Ed25519).")
        if stored and raw not in stored:
            problems.append(
                "public_key file does not list the given (keyring) key: it was replaced "
                "or the signing key was rotated without publishing it."
            )
        return {key_id(raw): Ed25519PublicKey.from_public_bytes(raw)}, notes
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
    if not isinstance(record, dict) or set(record) != set(RECORD_FIELDS):
        return "not an audit record (fields missing or added)"
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


def verify(
    directory: Path | str, public_key: Ed25519PublicKey | bytes | None = None
) -> VerifyReport:
    """Check the whole log in `directory`; `public_key` None means the stored public_key."""
    directory = Path(directory)
    problems: list[str] = []
    keys, notes = _trusted_keys(directory, public_key, problems)
    try:
        data = (directory / LOG_NAME).read_bytes()
    except FileNotFoundError:
        data = b""
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline, as it must
    if torn:
        problems.append(f"line {len(lines) + 1}: incomplete last record (no newline; torn write)")

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
    for number, record in parsed:
        seq = record["seq"]
        where = f"line {number} (seq {seq})"
        if record_hash(record) != record["hash"]:
            problems.append(f"{where}: record edited (its hash does not match its content)")
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
        previous_seq = max(previous_seq, seq)

    last_seq = parsed[-1][1]["seq"] if parsed else 0
    last_line = parsed[-1][0] if parsed else 0
    _check_head(directory, parsed, last_seq, last_line, keys, problems)
    if checkpoints == 0 and parsed:
        notes.append("no signed checkpoint in the log: only the hash chain and head protect it.")
    elif last_checkpoint and last_seq > last_checkpoint:
        notes.append(
            f"{last_seq - last_checkpoint} record(s) after the last signed checkpoint "
            f"(seq {last_checkpoint}) are protected by the chain and the head file only."
        )
    return VerifyReport(
        ok=not problems,
        records=len(lines),
        problems=problems,
        checkpoints=checkpoints,
        last_seq=last_seq,
        notes=notes,
    )


def _check_head(
    directory: Path,
    parsed: list[tuple[int, dict[str, Any]]],
    last_seq: int,
    last_line: int,
    keys: dict[str, Ed25519PublicKey],
    problems: list[str],
) -> None:
    try:
        head = read_head(directory)
    except AuditError as exc:
        problems.append(str(exc))
        return
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
    elif head.seq < last_seq:
        problems.append(
            f"records after seq {head.seq} (up to line {last_line}, seq {last_seq}) are not "
            "confirmed by the head file (appended outside the archive, or a crash mid-append)"
        )

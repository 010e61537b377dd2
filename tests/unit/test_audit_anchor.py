"""Audit log v2 (archive/audit/FORMAT.md): deletion, truncation, removal and forgery are
caught by the signatures, the pinned key and the database anchor, not only by the chain."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from archive.audit import (
    AuditError,
    AuditEvent,
    AuditLog,
    audit_log_for,
    pin_public_key,
    read_pin,
    verify,
    verify_home,
)
from archive.audit.log import (
    GENESIS,
    HEAD_NAME,
    LOG_NAME,
    PUBLIC_KEY_NAME,
    canonical,
    key_id,
    line_with_hash,
    public_key_bytes,
    sign_record,
)
from archive.config import load_config
from archive.fsck.check import FsckReport, _check_audit
from archive.paths import HomePaths


@pytest.fixture
def home(tmp_path: Path) -> HomePaths:
    (tmp_path / "archive.toml").write_text("[audit]\ncheckpoint_every = 10\n")
    return HomePaths(tmp_path)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _event(i: int, outcome: str = "success") -> AuditEvent:
    return AuditEvent("case.edit", outcome, "alice", ("trainer",), "10.0.0.5", f"NSR-{i:06d}")


def _fill(home: HomePaths, key: Ed25519PrivateKey, n: int = 14) -> AuditLog:
    """n records (every third denied), signed; a checkpoint after seq 10."""
    log = audit_log_for(home, signer=key)
    for i in range(n):
        log.append(_event(i, "denied" if i % 3 == 2 else "success"))
    return log


def _records(home: HomePaths) -> list[dict]:
    return [json.loads(x) for x in (home.audit_dir / LOG_NAME).read_text().splitlines()]


def _write_records(home: HomePaths, records: list[dict]) -> None:
    lines = [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in records]
    (home.audit_dir / LOG_NAME).write_text("".join(x + "\n" for x in lines))


def _rechain(records: list[dict], signer: Ed25519PrivateKey | None = None) -> list[dict]:
    """What a forger does: renumber, re-link, re-hash (and re-sign with their own key)."""
    prev, out = GENESIS, []
    for seq, record in enumerate(records, start=1):
        record = {**record, "seq": seq, "prev": prev}
        record["hash"] = hashlib.sha256(canonical(record)).hexdigest()
        if signer is not None:
            record["sig"] = sign_record(signer, key_id(public_key_bytes(signer)), record["hash"])
        prev = record["hash"]
        out.append(record)
    return out


def _rewrite_head(home: HomePaths, records: list[dict]) -> None:
    """Keep head.json consistent with the forged log (as in the issue)."""
    head = json.loads((home.audit_dir / HEAD_NAME).read_text())
    head["seq"] = records[-1]["seq"] if records else 0
    head["hash"] = records[-1]["hash"] if records else GENESIS
    (home.audit_dir / HEAD_NAME).write_text(json.dumps(head))


def _problems(home: HomePaths, public_key: bytes | None = None) -> list[str]:
    report = verify_home(home, [public_key] if public_key else None)
    assert not report.ok
    # fsck's audit part says the same, non-repairable
    fsck = FsckReport()
    _check_audit(load_config(home.root), False, fsck)
    assert fsck.findings and not fsck.ok
    assert not any(f.repairable for f in fsck.findings), fsck.findings
    return report.problems


def test_a_signed_anchored_log_verifies(home: HomePaths, key: Ed25519PrivateKey) -> None:
    _fill(home, key)
    assert read_pin(home.keys_dir) == [public_key_bytes(key)]
    report = verify_home(home)
    assert report.ok, report.problems
    assert report.last_seq == 15 and report.checkpoints == 1
    records = _records(home)
    assert all(r["v"] == 2 and r["sig"] for r in records)


def test_deleting_the_log_and_head_is_caught(home: HomePaths, key: Ed25519PrivateKey) -> None:
    _fill(home, key)
    (home.audit_dir / LOG_NAME).unlink()
    (home.audit_dir / HEAD_NAME).unlink()
    assert any("missing or empty" in p for p in _problems(home))


def test_an_emptied_log_is_caught(home: HomePaths, key: Ed25519PrivateKey) -> None:
    _fill(home, key)
    (home.audit_dir / LOG_NAME).write_bytes(b"")
    _rewrite_head(home, [])
    assert any("missing or empty" in p for p in _problems(home))


def test_cutting_records_after_the_last_checkpoint_is_caught(
    home: HomePaths, key: Ed25519PrivateKey
) -> None:
    _fill(home, key)
    kept = _records(home)[:12]  # checkpoint at 11; 13..15 cut
    _write_records(home, kept)
    _rewrite_head(home, kept)
    problems = _problems(home)
    assert any("records removed" in p and "13..15" in p for p in problems), problems


def test_removing_denied_records_is_caught(home: HomePaths, key: Ed25519PrivateKey) -> None:
    _fill(home, key)
    records = _records(home)
    kept = [r for r in records if not (r["seq"] > 11 and r["outcome"] == "denied")]
    # Signatures kept: they no longer match the re-chained records.
    forged = _rechain(kept)
    for record, original in zip(forged, kept, strict=True):
        record["sig"] = original["sig"]
    _write_records(home, forged)
    _rewrite_head(home, forged)
    problems = _problems(home)
    assert any("record signature is invalid" in p for p in problems), problems
    # Signatures dropped (as a command without the keyring writes): the anchor catches it.
    for record in forged:
        record["sig"] = None
    _write_records(home, _rechain(forged))
    _rewrite_head(home, _rechain(forged))
    problems = _problems(home)
    assert any("anchor" in p for p in problems), problems


def test_forged_appends_are_caught(home: HomePaths, key: Ed25519PrivateKey) -> None:
    _fill(home, key)
    records = _records(home)
    extra = {**records[-2], "action": "pull", "actor": "mallory", "sig": None}
    forged = records + _rechain([*records, extra])[-1:]
    _write_records(home, forged)
    _rewrite_head(home, forged)
    problems = _problems(home)
    assert any("not confirmed by the archive database's anchor" in p for p in problems)
    # Signed by the forger's own key: not the pinned key.
    mallory = Ed25519PrivateKey.generate()
    forged = records + _rechain([*records, extra], signer=mallory)[-1:]
    _write_records(home, forged)
    _rewrite_head(home, forged)
    assert any("not the trusted (pinned) key" in p for p in _problems(home))


def test_a_resigned_rewrite_is_caught_even_with_the_anchor_updated(
    home: HomePaths, key: Ed25519PrivateKey
) -> None:
    _fill(home, key)
    mallory = Ed25519PrivateKey.generate()
    kept = [r for r in _records(home) if r["outcome"] == "success" and r["actor"] != "system"]
    forged = _rechain(kept, signer=mallory)  # denied records and checkpoints gone
    _write_records(home, forged)
    _rewrite_head(home, forged)
    (home.audit_dir / PUBLIC_KEY_NAME).write_text(public_key_bytes(mallory).hex() + "\n")
    conn = sqlite3.connect(home.db_path)
    conn.execute("UPDATE audit_anchor SET seq = ?, hash = ?", (len(forged), forged[-1]["hash"]))
    conn.commit()
    conn.close()
    # The old default (the public_key file next to the log) is fooled; the pin is not.
    assert verify(home.audit_dir).ok
    assert any("not the trusted (pinned) key" in p for p in _problems(home))
    # Nor an off-site copy of the key.
    problems = _problems(home, public_key=public_key_bytes(key))
    assert any("not the trusted (pinned) key" in p for p in problems)


def test_head_deleted_or_rewritten_is_caught(home: HomePaths, key: Ed25519PrivateKey) -> None:
    _fill(home, key)
    head = (home.audit_dir / HEAD_NAME).read_bytes()
    (home.audit_dir / HEAD_NAME).unlink()
    assert any("head file missing" in p for p in _problems(home))
    raw = json.loads(head)
    raw["hash"] = "f" * 64
    (home.audit_dir / HEAD_NAME).write_text(json.dumps(raw))
    assert any("does not match the head" in p for p in _problems(home))


def test_the_anchor_row_deleted_is_caught(home: HomePaths, key: Ed25519PrivateKey) -> None:
    _fill(home, key)
    conn = sqlite3.connect(home.db_path)
    conn.execute("DELETE FROM audit_anchor")
    conn.commit()
    conn.close()
    assert any("anchor row is missing" in p for p in _problems(home))
    with pytest.raises(AuditError, match="anchor row is missing"):
        audit_log_for(home).append(_event(99))  # and nothing more is appended


def test_unsigned_records_are_noted_and_covered_by_the_next_checkpoint(
    home: HomePaths, key: Ed25519PrivateKey
) -> None:
    _fill(home, key, n=3)
    audit_log_for(home).append(_event(7))  # a command without the keyring
    report = verify_home(home)
    assert report.ok and any("without the keyring" in n for n in report.notes), report.notes
    assert _records(home)[-1]["sig"] is None
    audit_log_for(home, signer=key).checkpoint(key)
    report = verify_home(home)
    assert report.ok and not any("without the keyring" in n for n in report.notes)


def test_a_quiet_archive_checkpoints_on_a_timer(home: HomePaths, key: Ed25519PrivateKey) -> None:
    log = AuditLog(home.audit_dir, signer=key, checkpoint_minutes=0.002, durable=False)
    log.enable_group_commit(0.01)
    AuditLog(home.audit_dir, durable=False).append(_event(1))  # an unsigned command record
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(r["action"] == "audit.checkpoint" for r in _records(home)):
            break
        time.sleep(0.05)
    log.close()
    checkpoints = [r for r in _records(home) if r["action"] == "audit.checkpoint"]
    assert checkpoints and checkpoints[0]["detail"]["reason"] == "timer"
    assert verify(home.audit_dir, public_key_bytes(key)).ok


def test_an_append_inside_a_database_transaction_is_anchored_after_it(
    home: HomePaths, key: Ed25519PrivateKey
) -> None:
    """A room that audits inside its own SQLite transaction must not deadlock."""
    _fill(home, key, n=2)
    conn = sqlite3.connect(home.db_path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE other_room (x INTEGER)")
    log = audit_log_for(home)
    log.append(_event(5))  # returns although the anchor cannot be written yet
    conn.execute("COMMIT")
    conn.close()
    log.anchor.finish()
    assert verify_home(home).ok


def test_another_keyring_is_refused(home: HomePaths, key: Ed25519PrivateKey) -> None:
    _fill(home, key, n=1)
    with pytest.raises(AuditError, match="not the key pinned"):
        audit_log_for(home, signer=Ed25519PrivateKey.generate())
    assert pin_public_key(home.keys_dir, public_key_bytes(key)) is False


def _v1_log(directory: Path, n: int) -> None:
    """A version-1 log as the archive wrote it before FORMAT.md v2 (no v, no sig)."""
    directory.mkdir(parents=True)
    prev, lines = GENESIS, []
    for seq in range(1, n + 1):
        record = {"seq": seq, "timestamp": "2025-01-01T00:00:00.000000Z", "prev": prev}
        record.update(_event(seq).to_fields())
        prev = hashlib.sha256(canonical(record)).hexdigest()
        lines.append(line_with_hash(canonical(record).decode(), prev) + "\n")
    (directory / LOG_NAME).write_text("".join(lines))
    (directory / HEAD_NAME).write_text(json.dumps({"format": 1, "seq": n, "hash": prev}))


def test_a_version1_log_is_sealed_by_the_next_signed_writer(
    home: HomePaths, key: Ed25519PrivateKey
) -> None:
    _v1_log(home.audit_dir, 3)
    assert verify(home.audit_dir).ok  # old logs still read
    report = verify_home(home)
    assert report.ok and any("not yet anchored" in n for n in report.notes), report.notes
    audit_log_for(home, signer=key).append(_event(4))
    records = _records(home)
    assert "v" not in records[2]
    assert records[3]["action"] == "audit.checkpoint"
    assert records[3]["detail"]["reason"] == "upgrade" and records[3]["sig"]
    report = verify_home(home)
    assert report.ok and report.last_seq == 5, report.problems
    # A v1-looking record appended after the upgrade is refused.
    fake = {k: v for k, v in records[-1].items() if k not in ("v", "sig")}
    fake.update(seq=6, prev=records[-1]["hash"])
    fake["hash"] = hashlib.sha256(canonical(fake)).hexdigest()
    _write_records(home, [*records, fake])
    _rewrite_head(home, [*records, fake])
    assert any("old-format (v1) record after v2" in p for p in _problems(home))


def test_record_signature_covers_the_hash(home: HomePaths, key: Ed25519PrivateKey) -> None:
    _fill(home, key, n=1)
    record = _records(home)[0]
    kid, _, sig = record["sig"].partition(":")
    assert kid == key_id(public_key_bytes(key))
    key.public_key().verify(
        base64.b64decode(sig), b"teaching-archive audit record v2\n" + record["hash"].encode()
    )

"""The audit chain in PostgreSQL (archive/audit/FORMAT.md section 8): the same records
as the file chain, one linear chain from several writers ordered by the head row's
lock, and every deleted, edited or cut-off row found by verify."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select, update

from archive.audit import AuditError, AuditEvent, AuditLog, verify
from archive.audit.log import HEAD_NAME, LOG_NAME, public_key_bytes, record_hash
from archive.audit.pgchain import PgAuditLog, PgChain
from archive.audit.tables import audit_chain, audit_chain_head


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def opener(pg, tmp_path: Path):
    schema_key = tmp_path / "archive.db"
    return lambda: pg.connect(schema_key)


def _event(i: int) -> AuditEvent:
    return AuditEvent("case.edit", "success", "alice", ("trainer",), "10.0.0.5", f"NSR-{i:06d}")


def _log(tmp_path: Path, opener, key, name: str = "node1", every: int = 10) -> PgAuditLog:
    return PgAuditLog(tmp_path / name, opener, signer=key, checkpoint_every=every)


def _verify(tmp_path: Path, opener, key, name: str = "node1"):
    return verify(tmp_path / name, [public_key_bytes(key)], chain=PgChain(opener))


def _sql(opener, statement) -> None:
    conn = opener()
    try:
        conn.execute(statement)
    finally:
        conn.close()


def _line(opener, seq: int) -> str:
    conn = opener()
    try:
        return conn.execute(select(audit_chain.c.line).where(audit_chain.c.seq == seq)).scalar()
    finally:
        conn.close()


def test_records_are_the_file_formats_and_verify(tmp_path, opener, key):
    log = _log(tmp_path, opener, key)
    seqs = [log.append(_event(i)) for i in range(12)]
    log.close()
    assert seqs[:10] == list(range(1, 11)) and seqs[10] == 12  # checkpoint at 11
    lines = PgChain(opener).data().splitlines()
    assert len(lines) == 13
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(1, 14))
    assert all(r["hash"] == record_hash(r) and r["v"] == 2 and r["sig"] for r in records)
    assert records[10]["action"] == "audit.checkpoint"
    assert not (tmp_path / "node1" / LOG_NAME).exists()  # nothing in the home's files
    report = _verify(tmp_path, opener, key)
    assert report.ok, report.problems
    assert report.last_seq == 13 and report.checkpoints == 1


def test_two_writers_make_one_linear_chain(tmp_path, opener, key):
    logs = [_log(tmp_path, opener, key, f"node{n}", every=50) for n in (1, 2)]
    logs[1].enable_group_commit(0.01)
    errors: list[Exception] = []

    def run(log: PgAuditLog, base: int) -> None:
        try:
            for i in range(40):
                log.append(_event(base + i))
            log.flush()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(log, n * 100)) for n, log in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for log in logs:
        log.close()
    assert not errors
    records = [json.loads(line) for line in PgChain(opener).data().splitlines()]
    targets = [r["target"] for r in records if r["action"] == "case.edit"]
    assert sorted(targets) == sorted(f"NSR-{b + i:06d}" for b in (0, 100) for i in range(40))
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    for n in (1, 2):
        assert _verify(tmp_path, opener, key, f"node{n}").ok


def test_deleted_middle_row_is_found(tmp_path, opener, key):
    log = _log(tmp_path, opener, key)
    for i in range(6):
        log.append(_event(i))
    log.close()
    _sql(opener, delete(audit_chain).where(audit_chain.c.seq == 3))
    report = _verify(tmp_path, opener, key)
    assert not report.ok
    assert any("seq 3 missing" in p for p in report.problems), report.problems


def test_edited_row_is_found(tmp_path, opener, key):
    log = _log(tmp_path, opener, key)
    for i in range(6):
        log.append(_event(i))
    log.close()
    line = _line(opener, 4)
    edited = line.replace("alice", "mallory")
    _sql(opener, update(audit_chain).where(audit_chain.c.seq == 4).values(line=edited))
    report = _verify(tmp_path, opener, key)
    assert not report.ok
    assert any("seq 4" in p and "edited" in p for p in report.problems), report.problems


def test_rows_cut_off_the_end_are_found_and_appends_refused(tmp_path, opener, key):
    log = _log(tmp_path, opener, key)
    for i in range(6):
        log.append(_event(i))
    _sql(opener, delete(audit_chain).where(audit_chain.c.seq >= 5))
    report = _verify(tmp_path, opener, key)
    assert any("end cut off" in p for p in report.problems), report.problems
    with pytest.raises(AuditError, match="removed"):
        log.append(_event(99))
    log.close()


def test_end_cut_with_the_head_rewound_is_found_by_a_node_that_wrote_it(tmp_path, opener, key):
    log = _log(tmp_path, opener, key)
    for i in range(6):
        log.append(_event(i))
    log.close()
    assert json.loads((tmp_path / "node1" / HEAD_NAME).read_text())["seq"] == 6
    digest = json.loads(_line(opener, 4))
    _sql(opener, delete(audit_chain).where(audit_chain.c.seq >= 5))
    _sql(opener, update(audit_chain_head).values(seq=4, hash=digest["hash"]))
    report = _verify(tmp_path, opener, key)
    assert any("this node committed seq 6" in p for p in report.problems), report.problems


def test_a_home_file_chain_moves_into_the_database_once(tmp_path, opener, key):
    file_log = AuditLog(tmp_path / "node1", signer=key, checkpoint_every=10)
    for i in range(4):
        file_log.append(_event(i))
    file_log.close()
    before = (tmp_path / "node1" / LOG_NAME).read_bytes()
    log = _log(tmp_path, opener, key)
    assert log.append(_event(4)) == 5
    log.close()
    data = PgChain(opener).data()
    assert data.startswith(before)
    assert _verify(tmp_path, opener, key).ok

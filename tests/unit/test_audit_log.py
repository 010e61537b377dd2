"""Audit log: chain, checkpoints, tamper detection with location, concurrency."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from archive.audit import AuditError, AuditEvent, AuditLog, read_head, verify
from archive.audit.log import LOG_NAME, public_key_bytes


def _event(i: int, actor: str = "alice") -> AuditEvent:
    return AuditEvent(
        action="case.edit",
        outcome="success",
        actor=actor,
        roles=("trainer",),
        source="10.0.0.5",
        target=f"NSR-{i:06d}",
        detail={"n": i, "ok": True},
    )


def _fill(directory: Path, n: int, signer: Ed25519PrivateKey | None = None, every: int = 5):
    log = AuditLog(directory, signer=signer, checkpoint_every=every, durable=False)
    for i in range(n):
        log.append(_event(i))
    return log


def _lines(directory: Path) -> list[bytes]:
    return (directory / LOG_NAME).read_bytes().splitlines(keepends=True)


def _write(directory: Path, lines: list[bytes]) -> None:
    (directory / LOG_NAME).write_bytes(b"".join(lines))


def test_append_returns_seq_and_verifies(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    log = AuditLog(tmp_path, signer=key, checkpoint_every=4, durable=False)
    seqs = [log.append(_event(i)) for i in range(10)]
    # A checkpoint follows every record whose seq is a multiple of 4 (seqs 5, 9, 13).
    assert seqs == [1, 2, 3, 4, 6, 7, 8, 10, 11, 12]
    report = verify(tmp_path, key.public_key())
    assert report.ok, report.problems
    assert report.records == 13 and report.checkpoints == 3 and report.last_seq == 13
    head = read_head(tmp_path)
    assert head is not None and head.seq == 13 and head.checkpoint["seq"] == 13
    # Verification with no key uses the public key stored in clear.
    assert verify(tmp_path).ok
    assert (tmp_path / "public_key").read_text().strip() == public_key_bytes(key).hex()


def test_explicit_checkpoint_and_wrong_key(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    log = _fill(tmp_path, 3)
    assert log.checkpoint(key) == 4
    other = Ed25519PrivateKey.generate()
    report = verify(tmp_path, other.public_key())
    assert not report.ok
    assert any("line 4 (seq 4)" in p and "unknown key" in p for p in report.problems)
    assert any("does not list the given" in p for p in report.problems)


def test_forged_checkpoint_signature_detected(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    log = _fill(tmp_path, 2)
    log.checkpoint(key)
    lines = _lines(tmp_path)
    record = json.loads(lines[2])
    sig = bytearray(record["detail"]["signature"].encode())
    sig[5] = ord("A") if sig[5] != ord("A") else ord("B")
    record["detail"]["signature"] = sig.decode()
    from archive.audit.log import record_hash

    record["hash"] = record_hash(record)
    lines[2] = (json.dumps(record) + "\n").encode()
    _write(tmp_path, lines)
    problems = verify(tmp_path, key.public_key()).problems
    assert any("line 3 (seq 3)" in p and "signature" in p for p in problems)


def test_one_byte_changed_is_located(tmp_path: Path) -> None:
    _fill(tmp_path, 8)
    lines = _lines(tmp_path)
    lines[4] = lines[4].replace(b"NSR-000004", b"NSR-000005")
    _write(tmp_path, lines)
    report = verify(tmp_path)
    assert not report.ok
    assert report.problems == [
        "line 5 (seq 5): record edited (its hash does not match its content)"
    ]


def test_edited_and_rehashed_breaks_next_link(tmp_path: Path) -> None:
    from archive.audit.log import record_hash

    _fill(tmp_path, 6)
    lines = _lines(tmp_path)
    record = json.loads(lines[2])
    record["actor"] = "mallory"
    record["hash"] = record_hash(record)
    lines[2] = (json.dumps(record) + "\n").encode()
    _write(tmp_path, lines)
    problems = verify(tmp_path).problems
    assert any(p.startswith("line 4 (seq 4): chain broken") for p in problems)


def test_one_line_removed_is_located(tmp_path: Path) -> None:
    _fill(tmp_path, 8)
    lines = _lines(tmp_path)
    del lines[3]
    _write(tmp_path, lines)
    problems = verify(tmp_path).problems
    assert len(problems) == 1
    assert problems[0].startswith("line 4 (seq 5): record(s) seq 4 missing")


def test_lines_swapped_are_located(tmp_path: Path) -> None:
    _fill(tmp_path, 8)
    lines = _lines(tmp_path)
    lines[2], lines[3] = lines[3], lines[2]
    _write(tmp_path, lines)
    problems = verify(tmp_path).problems
    assert any(p.startswith("line 3 (seq 4): out of order") for p in problems)
    assert any(p.startswith("line 4 (seq 3): out of order") for p in problems)


@pytest.mark.parametrize("cut", [1, 3])
def test_end_cut_off_is_detected(tmp_path: Path, cut: int) -> None:
    key = Ed25519PrivateKey.generate()
    _fill(tmp_path, 12, signer=key, every=5)  # 12 events + 2 checkpoints = 14 records
    lines = _lines(tmp_path)
    _write(tmp_path, lines[:-cut])
    problems = verify(tmp_path, key.public_key()).problems
    assert len(problems) == 1
    assert problems[0].startswith(f"end cut off: the log ends at line {14 - cut}")
    assert "head records seq 14" in problems[0]


def test_cut_past_signed_checkpoint_cites_signature(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    _fill(tmp_path, 5, signer=key, every=5)  # seq 6 is the checkpoint, last record
    _write(tmp_path, _lines(tmp_path)[:-2])
    problems = verify(tmp_path, key.public_key()).problems
    assert "signed checkpoint at seq 6 confirms it" in problems[0]


def test_torn_last_line_and_garbage(tmp_path: Path) -> None:
    _fill(tmp_path, 4)
    lines = _lines(tmp_path)
    lines[1] = b"{not json\n"
    lines[3] = lines[3][:-10]
    _write(tmp_path, lines)
    problems = verify(tmp_path).problems
    assert any(p.startswith("line 2: not valid JSON") for p in problems)
    assert any(p.startswith("line 4: incomplete last record") for p in problems)


def test_append_refuses_after_truncation(tmp_path: Path) -> None:
    log = _fill(tmp_path, 5)
    _write(tmp_path, _lines(tmp_path)[:-1])
    with pytest.raises(AuditError, match="records were removed"):
        log.append(_event(99))


def test_empty_log_verifies(tmp_path: Path) -> None:
    report = verify(tmp_path / "none")
    assert report.ok and report.records == 0


def test_head_removed_is_reported(tmp_path: Path) -> None:
    _fill(tmp_path, 2)
    (tmp_path / "head.json").unlink()
    assert any("head file missing" in p for p in verify(tmp_path).problems)


@pytest.mark.parametrize(
    "event",
    [
        AuditEvent("case.edit", "success", "alice", detail={"nhs": "943 476 5919"}),
        AuditEvent("case.edit", "success", "alice", detail={"n": 9434765919}),
        AuditEvent("case.edit", "success", "alice", target="9434765919"),
        AuditEvent("case.edit", "success", "alice", detail={"x": "id-943-476-5919"}),
        AuditEvent("Case Edit", "success", "alice"),
        AuditEvent("case.edit", "maybe", "alice"),
        AuditEvent("case.edit", "success", ""),
        AuditEvent("case.edit", "success", "alice", detail={"nested": {"a": 1}}),  # type: ignore[dict-item]
        AuditEvent("case.edit", "success", "alice", detail={"Bad Key": 1}),
    ],
)
def test_guard_refuses_identifying_or_malformed(tmp_path: Path, event: AuditEvent) -> None:
    log = AuditLog(tmp_path, durable=False)
    with pytest.raises(AuditError) as info:
        log.append(event)
    assert "9434765919" not in str(info.value) and "5919" not in str(info.value)
    assert not (tmp_path / LOG_NAME).exists()


def test_guard_allows_pseudonymous_values(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, durable=False)
    uid = "2.25.329800735698586629295641978511506172918"
    log.append(
        AuditEvent("pull", "success", "bob", target=uid, detail={"count": 123456789, "ts": "x"})
    )
    assert verify(tmp_path).ok


def _worker(directory: str, worker: int, n: int) -> None:
    log = AuditLog(directory, checkpoint_every=7, signer=None, durable=True)
    for i in range(n):
        log.append(_event(i, actor=f"w{worker}"))


def test_concurrent_appends_from_processes_make_one_chain(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    report = verify(tmp_path)
    assert report.ok, report.problems
    assert report.records == 100 and report.last_seq == 100
    actors = [json.loads(line)["actor"] for line in _lines(tmp_path)]
    assert {a: actors.count(a) for a in set(actors)} == {f"w{w}": 25 for w in range(4)}


def test_concurrent_appends_with_signer(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    import threading

    log = AuditLog(tmp_path, signer=key, checkpoint_every=10, durable=False)
    threads = [
        threading.Thread(target=lambda: [log.append(_event(i)) for i in range(20)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = verify(tmp_path, key.public_key())
    assert report.ok, report.problems
    assert report.checkpoints == 8 and report.records == 88


# -- group commit ---------------------------------------------------------------------


def test_group_commit_queues_then_writes_one_verifiable_chain(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    log = AuditLog(tmp_path, signer=key, checkpoint_every=4, durable=False)
    log.enable_group_commit(interval=30)  # long: only explicit flushes write
    assert [log.append(_event(i)) for i in range(10)] == [0] * 10
    assert not (tmp_path / LOG_NAME).exists()  # queued, not yet written
    assert log.flush() == 12  # the last record queued; a checkpoint follows it (seq 13)
    report = verify(tmp_path, key.public_key())
    assert report.ok, report.problems
    assert report.records == 13 and report.checkpoints == 3
    assert [json.loads(line)["detail"].get("n") for line in _lines(tmp_path)] == [
        0, 1, 2, 3, None, 4, 5, 6, None, 7, 8, 9, None,
    ]  # fmt: skip
    assert read_head(tmp_path).seq == 13
    assert log.append(_event(10), sync=True) == 14  # sync: written before it returns
    assert verify(tmp_path).records == 14
    log.close()


def test_group_commit_background_thread_writes_within_the_interval(tmp_path: Path) -> None:
    import time

    log = AuditLog(tmp_path, durable=False)
    log.enable_group_commit(interval=0.02)
    for i in range(5):
        log.append(_event(i))
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and len(_lines(tmp_path) if (tmp_path / LOG_NAME).exists() else []) < 5
    ):
        time.sleep(0.01)
    assert len(_lines(tmp_path)) == 5
    assert verify(tmp_path).ok
    log.close()


def test_group_commit_and_a_synchronous_writer_keep_one_chain(tmp_path: Path) -> None:
    """The plugin (queued) and the CLI (synchronous) interleave: the cached tail is
    noticed to be stale and every record chains onto the real last one."""
    plugin = AuditLog(tmp_path, durable=False)
    plugin.enable_group_commit(interval=30)
    cli = AuditLog(tmp_path, durable=False)
    for round_ in range(3):
        for i in range(3):
            plugin.append(_event(i, actor="plugin"))
        cli.append(_event(round_, actor="cli"))  # written first: it is synchronous
        plugin.flush()
    report = verify(tmp_path)
    assert report.ok, report.problems
    records = [json.loads(line) for line in _lines(tmp_path)]
    # Which writer lands first is up to timing (the queue may be written early); what is
    # guaranteed is one valid chain holding every record of both writers, each in order.
    assert sorted(r["actor"] for r in records) == ["cli"] * 3 + ["plugin"] * 9
    seqs = [r["seq"] for r in records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    plugin.close()


def _crashing_writer(directory: str, flushed: int, queued: int) -> None:
    import os

    log = AuditLog(directory, checkpoint_every=7, durable=True)
    log.enable_group_commit(interval=30)
    for i in range(flushed):
        log.append(_event(i))
    log.flush()
    for i in range(queued):
        log.append(_event(1000 + i))
    os._exit(0)  # a crash: no flush, no atexit


def test_crash_loses_only_the_queued_window_and_never_the_chain(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    process = ctx.Process(target=_crashing_writer, args=(str(tmp_path), 12, 9))
    process.start()
    process.join(60)
    assert process.exitcode == 0
    report = verify(tmp_path)
    assert report.ok, report.problems
    assert report.records == 12  # the 9 queued records are the lost window
    after = AuditLog(tmp_path, durable=False)
    assert after.append(_event(99)) == 13
    assert verify(tmp_path).ok


def _killed_writer(directory: str) -> None:
    log = AuditLog(directory, durable=True)
    log.enable_group_commit(interval=0.001, max_pending=5)
    i = 0
    while True:
        log.append(_event(i))
        i += 1


def test_kill_during_group_commit_leaves_a_valid_chain(tmp_path: Path) -> None:
    import os
    import signal
    import time

    ctx = multiprocessing.get_context("fork")
    process = ctx.Process(target=_killed_writer, args=(str(tmp_path),))
    process.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
        (tmp_path / LOG_NAME).exists() and len(_lines(tmp_path)) > 50
    ):
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.join(10)
    report = verify(tmp_path)
    # Killed between the log's write and the head's replacement, the head may lag the
    # last written records (reported); the chain itself is never broken.
    assert all("not confirmed by the head" in p for p in report.problems), report.problems
    assert report.records > 50
    log = AuditLog(tmp_path, durable=False)
    log.append(_event(1))  # the next append moves the head on
    assert verify(tmp_path).ok


def test_group_commit_write_failure_fails_closed(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, durable=False)
    log.enable_group_commit(interval=30)
    for i in range(3):
        log.append(_event(i))
    log.flush()
    _write(tmp_path, _lines(tmp_path)[:-1])  # somebody cuts the end off
    log.append(_event(7))  # queued
    with pytest.raises(AuditError, match="records were removed"):
        log.flush()
    with pytest.raises(AuditError, match="records were removed"):
        log.append(_event(8))  # every later append is refused: the action must not proceed
    log._pending.clear()  # the queued records cannot be written here; no noise at exit


@pytest.mark.parametrize(
    "value, refused",
    [
        ("9434765919", True),
        ("943 476 5919", True),
        ("nhs:943-476-5919,", True),
        ("ab123456-7890cdef-0123abcd", False),  # an Orthanc-style hex id
        ("q-3a1234567890bcdef0123456", False),  # a quarantine item id
        ("2.25.123456789012345678901234567890", False),  # a de-identified UID
    ],
)
def test_number_guard_spares_random_hex_ids(tmp_path: Path, value: str, refused: bool) -> None:
    log = AuditLog(tmp_path, durable=False)
    event = AuditEvent("case.view", "success", actor="alice", detail={"ref": value})
    if refused:
        with pytest.raises(AuditError):
            log.append(event)
    else:
        log.append(event)
        assert verify(tmp_path).ok


def test_concurrent_synchronous_appends_share_writes_and_each_gets_its_own_seq(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads appending synchronously at once share one write (leader/follower): fewer
    writes than records, yet every caller gets the seq of its own record, durable."""
    import os
    import threading
    import time

    log = AuditLog(tmp_path)
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (time.sleep(0.004), real_fsync(fd)))
    writes = []
    real_write = log._write_batch
    monkeypatch.setattr(
        log, "_write_batch", lambda *a, **k: writes.append(1) or real_write(*a, **k)
    )
    start = threading.Barrier(6)
    got: dict[int, tuple[str, int]] = {}

    def worker(w: int) -> None:
        start.wait()
        for i in range(20):
            actor = f"user{w}"
            seq = log.append(_event(i, actor=actor))
            got[seq] = (actor, i)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = [json.loads(line) for line in _lines(tmp_path)]
    assert len(records) == len(got) == 120
    for record in records:  # each caller's seq names its own record
        assert (record["actor"], record["detail"]["n"]) == got[record["seq"]]
    assert len(writes) < 120  # shared writes happened
    assert verify(tmp_path).ok


def test_a_failed_shared_write_fails_every_waiting_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(tmp_path)
    log.append(_event(0))

    def broken(*args, **kwargs):
        raise AuditError("cannot write the audit log (No space left on device)")

    monkeypatch.setattr(log, "_write_batch", broken)
    with pytest.raises(AuditError):
        log.append(_event(1))
    assert log._waiting == [] and log._pending == []
    monkeypatch.undo()
    assert log.append(_event(2)) == 2
    assert verify(tmp_path).ok


@pytest.mark.parametrize(
    "detail",
    [
        {},
        {"outcome": "x", "reason": 'a ,"outcome":"y" inside'},
        {"a": 1, "z": True, "uri": "/teaching/x?q=\u00e9"},
        {"hash": "not the hash", "prev": "p"},
        {"a": 1, "outcome": "x"},  # a nested ,"outcome": before the real one
    ],
)
def test_line_with_hash_equals_a_full_dump(detail: dict) -> None:
    from archive.audit.log import canonical, line_with_hash, record_hash

    record = {"seq": 7, "timestamp": "t", "prev": "0" * 64, "action": "access.decision",
              "outcome": "success", "actor": "pat", "roles": ['a\\",outcome'], "source": "s",
              "target": None, "detail": detail}  # fmt: skip
    digest = record_hash(record)
    expected = json.dumps({**record, "hash": digest}, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)  # fmt: skip
    assert line_with_hash(canonical(record).decode(), digest) == expected

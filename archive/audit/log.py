"""The append-only, hash-chained, signed audit log (file format v2, see FORMAT.md).

Layout of HOME/data/audit/:

    audit.jsonl   one JSON record per line, append-only
    head.json     the latest seq and hash (and the latest signed checkpoint), replaced
                  atomically after every write (each synchronous append, or each
                  group-commit batch, see AuditLog): cutting lines off the end of
                  audit.jsonl leaves the head pointing past the end, so it is detected
    public_key    hex Ed25519 public keys (one per line) whose signatures verify the
                  checkpoints; in clear so verification needs no passphrase
    .lock         flock'ed by every writer so that the CLI and the Orthanc plugin,
                  appending concurrently, keep one linear chain

A record is {seq, timestamp, prev, action, outcome, actor, roles, source, target,
detail, v, hash, sig}; `hash` is SHA-256 over the canonical JSON (sorted keys, no spaces,
UTF-8) of every field but `hash` and `sig`, `prev` is the previous record's hash (64
zeros for seq 1), and `sig` an Ed25519 signature of the hash by the keyring's audit key
(null when the writer does not hold the keyring). A checkpoint is an ordinary record
with action "audit.checkpoint" whose detail carries covers_seq, covers_hash, key_id and
an Ed25519 signature over "teaching-archive audit checkpoint v1\\n<covers_seq>\\n<covers_hash>".

Outside the log's lines, the end of the log is anchored in the archive database (see
anchor.py) and the trusted public key is pinned in HOME/keys (FORMAT.md section 2).
"""

from __future__ import annotations

import atexit
import base64
import errno
import fcntl
import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from archive.audit.anchor import DbAnchor
from archive.audit.events import AuditError, AuditEvent

FORMAT_VERSION = 2
LOG_NAME = "audit.jsonl"
HEAD_NAME = "head.json"
PUBLIC_KEY_NAME = "public_key"
LOCK_NAME = ".lock"
GENESIS = "0" * 64
CHECKPOINT_ACTION = "audit.checkpoint"
SIGNATURE_CONTEXT = b"teaching-archive audit checkpoint v1\n"
RECORD_CONTEXT = b"teaching-archive audit record v2\n"
RECORD_FIELDS_V1 = (
    "seq",
    "timestamp",
    "prev",
    "action",
    "outcome",
    "actor",
    "roles",
    "source",
    "target",
    "detail",
    "hash",
)
RECORD_FIELDS = (*RECORD_FIELDS_V1, "v", "sig")
_TAIL_CHUNK = 65536
_process_lock = threading.Lock()


def canonical(record: dict[str, Any]) -> bytes:
    """The exact bytes hashed for a record: every field but `hash` and `sig`, canonical JSON."""
    body = {k: v for k, v in record.items() if k not in ("hash", "sig")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def line_with_hash(body: str, digest: str, sig: str | None | bool = False) -> str:
    """The record's line: its canonical JSON `body` with `"hash"` (and `"sig"`, unless
    `sig` is False: a v1 line) in sorted place.

    Equal to dumping the record with its hash (sorted keys), without serialising it a
    second time (every HTTP request is audited). Every record has a top-level "outcome",
    the key after "hash"; it is the last `,"outcome":` in the text, because the keys after
    it hold only escaped strings, ints and lists of escaped strings."""
    cut = body.rfind(',"outcome":')
    at = body.rfind(',"source":')
    if cut < 0 or at < cut:  # not a record the log writes; keep the slow, obviously right path
        record = {**json.loads(body), "hash": digest}
        if sig is not False:
            record["sig"] = sig
        return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if sig is not False:  # "sig" sorts between "seq" and "source"
        value = "null" if sig is None else f'"{sig}"'
        body = f'{body[:at]},"sig":{value}{body[at:]}'
    return f'{body[:cut]},"hash":"{digest}"{body[cut:]}'


def record_message(digest: str) -> bytes:
    """What a record's `sig` signs: the context and the record's hash (hex, ASCII)."""
    return RECORD_CONTEXT + digest.encode("ascii")


def sign_record(signing_key: Ed25519PrivateKey, kid: str, digest: str) -> str:
    signature = signing_key.sign(record_message(digest))
    return f"{kid}:{base64.b64encode(signature).decode()}"


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def public_key_bytes(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(raw_public_key: bytes) -> str:
    """Short stable name of a signing key, recorded in each checkpoint."""
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def checkpoint_message(covers_seq: int, covers_hash: str) -> bytes:
    return SIGNATURE_CONTEXT + f"{covers_seq}\n{covers_hash}".encode()


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    checkpoint: dict[str, Any] | None = None


def read_head(directory: Path) -> Head | None:
    """The head file, or None if the log was never written (raises AuditError if unreadable)."""
    path = directory / HEAD_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AuditError(
            f"{path} is unreadable ({type(exc).__name__}); run archive audit verify."
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("seq"), int):
        raise AuditError(f"{path} is malformed; run archive audit verify.")
    return Head(seq=raw["seq"], hash=str(raw.get("hash", "")), checkpoint=raw.get("checkpoint"))


def read_last_line(path: Path) -> bytes | None:
    """The last complete line of a file (without newline) or None if empty/missing.

    Raises AuditError if the file does not end with a newline: a torn write must be
    looked at (archive audit verify) before anything is appended after it.
    """
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return None
    with fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return None
        chunk = b""
        pos = size
        while True:
            step = min(_TAIL_CHUNK, pos)
            pos -= step
            fh.seek(pos)
            chunk = fh.read(step) + chunk
            if not chunk.endswith(b"\n"):
                raise AuditError(
                    f"{path} ends with an incomplete record; run archive audit verify."
                )
            cut = chunk.rfind(b"\n", 0, len(chunk) - 1)
            if cut >= 0 or pos == 0:
                return chunk[cut + 1 : -1]


def _atomic_write(path: Path, data: bytes, durable: bool, *, sync_dir: bool = True) -> None:
    """Write-fsync-rename: the file is the old or the new, never torn. `sync_dir=False`
    leaves the rename itself to the next journal commit (see AuditLog._write_batch)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable and sync_dir:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class AuditLog:
    """Appends events to the chain in `directory`; safe across threads and processes.

    `signer` (the keyring's audit signing key), when given, signs every record and a
    checkpoint every `checkpoint_every` records and, when `checkpoint_minutes` > 0, at
    least every that many minutes (from a timer too once group commit is on). `anchor`
    (the archive database's row, see anchor.py), when given, is checked before and
    updated after every write. `durable=False` skips fsync (tests and benchmarks only:
    a crash could then lose the last records).

    Two ways of appending (see `enable_group_commit`):
    - synchronous (the default, and the CLI's): `append` writes, fsyncs and updates the
      head before it returns the record's seq;
    - group commit (the Orthanc plugin's): `append` validates the event and queues it;
      a background thread chains and writes the queue at most `interval` seconds later
      in one write + one fsync + one head update, under the same file lock. Records are
      chained only when written, under the lock, so CLI and plugin still make one linear
      chain. The window, written down: a crash (kill -9, power cut) loses at most the
      records queued in the last `interval` seconds, never a record already written,
      and never the chain (nothing half-chained reaches the file). If a write fails,
      every later `append` raises AuditError until a write succeeds again (fail closed).

    Between writes the log remembers the last seq/hash and the file's (inode, size,
    mtime): if they are unchanged at the next write, the tail is not re-read; if
    another process appended (or someone truncated the file), the tail and head are
    read and checked again as before.
    """

    def __init__(
        self,
        directory: Path | str,
        signer: Ed25519PrivateKey | None = None,
        checkpoint_every: int = 100,
        durable: bool = True,
        *,
        anchor: DbAnchor | None = None,
        checkpoint_minutes: float = 0.0,
    ) -> None:
        if checkpoint_every < 2:
            raise ValueError("checkpoint_every must be at least 2")
        self.directory = Path(directory)
        self.signer = signer
        self._kid = key_id(public_key_bytes(signer)) if signer is not None else ""
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = max(0.0, checkpoint_minutes * 60)
        self.anchor = anchor
        self._last_checkpoint = time.monotonic()
        self._timer: threading.Thread | None = None
        self._timer_wake = threading.Event()
        self.durable = durable
        self.log_path = self.directory / LOG_NAME
        self.interval = 0.0  # 0 = synchronous appends
        self.max_pending = 1000
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._waiting: list[_Slot] = []  # synchronous appends not yet written
        self._cond = threading.Condition()
        self._known: tuple[tuple[int, int, int], int, str] | None = None
        self._broken: AuditError | None = None
        self._flusher: threading.Thread | None = None
        self._closing = False
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise AuditError(
                f"cannot create the audit directory {self.directory} ({exc.strerror}); "
                "check that the data volume is mounted and writable."
            ) from None
        if signer is not None:
            self._publish_public_key(public_key_bytes(signer))

    # -- public API ---------------------------------------------------------------

    def enable_group_commit(self, interval: float = 0.05, max_pending: int = 1000) -> None:
        """Queue appends and write them at most `interval` s later (see class doc).

        A queue of `max_pending` records is written at once by the appending thread
        (back-pressure). The queue is also written by `flush`, `last`, `checkpoint`,
        `close` and at interpreter exit.
        """
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.max_pending = max(1, max_pending)
        if self.anchor is not None:
            self.anchor.keep_open = True
        if self._flusher is None:
            self._flusher = threading.Thread(
                target=self._run, name="audit-group-commit", daemon=True
            )
            self._flusher.start()
            atexit.register(self._close_at_exit)
        if self.signer is not None and self.checkpoint_seconds > 0 and self._timer is None:
            self._timer = threading.Thread(
                target=self._run_timer, name="audit-checkpoint-timer", daemon=True
            )
            self._timer.start()

    def append(self, event: AuditEvent, *, sync: bool = False) -> int:
        """Validate, chain and append one event; returns its seq (0 when only queued).

        Raises AuditError if the event is refused or the log cannot be written (in group
        commit: a previous write failed); callers must then refuse the action they were
        about to audit (fail closed). `sync=True` writes it (and the queue) before
        returning, whatever the mode.
        """
        entry = (utc_now(), event.to_fields())
        if self._broken is not None and not sync:
            self._retry_broken()
        if self.interval <= 0 or sync or self._closing:
            return self._append_now(entry)
        with self._cond:
            self._pending.append(entry)
            if len(self._pending) == 1:
                self._cond.notify()  # wake the writer: it waits `interval` from here
            full = len(self._pending) >= self.max_pending
        if full:
            self.flush()
        return 0

    def _append_now(self, entry: tuple[str, dict[str, Any]]) -> int:
        """Write `entry` (and the queue) durably before returning its seq.

        Threads appending at the same moment share one write: whoever gets the lock
        writes every entry waiting by then, and the others find theirs already written
        (leader/follower commit). Each caller still returns only once its record is
        fsynced, so there is no window; the watch folder's workers gain most."""
        slot = _Slot(entry)
        with self._cond:
            self._waiting.append(slot)
        with self._locked():
            if slot.done:
                if slot.error is not None:
                    raise slot.error
                return slot.seq
            with self._cond:
                slots, self._waiting = self._waiting, []
                queued, self._pending = self._pending, []
            try:
                seqs = self._write_batch(queued + [s.entry for s in slots])
            except _AnchorError as exc:  # written, but the anchor lags: do not write twice
                self._broken = exc
                for other in slots:
                    other.error, other.done = exc, True
                raise
            except AuditError as exc:
                with self._cond:
                    self._pending[:0] = queued
                self._broken = exc
                self._known = None
                for other in slots:
                    other.error, other.done = exc, True
                raise
            self._broken = None
            for other, seq in zip(slots, seqs[len(queued) :], strict=True):
                other.seq, other.done = seq, True
            return slot.seq

    def flush(self) -> int:
        """Write every queued record now; returns the seq of the last record written."""
        return self._flush([])

    def close(self) -> None:
        """Stop the group-commit thread after writing the queue (and, when this log signs
        and runs group commit, a checkpoint covering what was written since the last)."""
        self._closing = True
        self._timer_wake.set()
        with self._cond:
            self._cond.notify_all()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=10)
        self.flush()
        if self._timer is not None and self.signer is not None and self._uncovered():
            self._flush([], checkpoint_key=self.signer, reason="close")

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except AuditError as exc:
            print(f"teaching-archive: audit records lost at exit: {exc}", file=sys.stderr)

    def checkpoint(self, signing_key: Ed25519PrivateKey, reason: str = "request") -> int:
        """Append a signed checkpoint covering the latest record; returns its seq."""
        self._publish_public_key(public_key_bytes(signing_key))
        return self._flush([], checkpoint_key=signing_key, reason=reason)

    def last(self) -> tuple[int, str]:
        """(seq, hash) of the last record, (0, GENESIS) for an empty log."""
        self.flush()
        with self._locked():
            self._known = None  # re-read and check the tail and head
            return self._tail()

    # -- internals ----------------------------------------------------------------

    def _uncovered(self) -> bool:
        """True when records were written after the last checkpoint (head file's view)."""
        try:
            head = read_head(self.directory)
        except AuditError:
            return False
        if head is None or head.seq == 0:
            return False
        return not head.checkpoint or head.checkpoint.get("seq") != head.seq

    def _run_timer(self) -> None:
        """Checkpoint every `checkpoint_seconds` when records were added meanwhile (by
        this process or by commands without the keyring)."""
        while not self._timer_wake.wait(self.checkpoint_seconds):
            if self._closing:
                return
            if time.monotonic() - self._last_checkpoint < self.checkpoint_seconds * 0.5:
                continue  # a write signed one recently
            try:
                if self._uncovered() and self.signer is not None:
                    self._flush([], checkpoint_key=self.signer, reason="timer")
            except AuditError as exc:
                print(f"teaching-archive: timed audit checkpoint failed: {exc}", file=sys.stderr)

    def _retry_broken(self) -> None:
        if not self._pending:  # nothing left over to write: the next write decides
            self._broken = None
            return
        try:
            self.flush()
        except AuditError:
            pass
        if self._broken is not None:
            raise self._broken

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                self._cond.wait(self.interval)  # gather more records for this write
            try:
                self.flush()
            except AuditError:
                time.sleep(self.interval)  # _broken is set; appends fail closed meanwhile

    def _flush(
        self,
        extra: list[tuple[str, dict[str, Any]]],
        checkpoint_key: Ed25519PrivateKey | None = None,
        reason: str = "request",
    ) -> int:
        if not extra and checkpoint_key is None and not self._pending:
            return self._known[1] if self._known else 0
        with self._locked():
            with self._cond:
                batch, self._pending = self._pending + extra, []
            if not batch and checkpoint_key is None:
                return self._known[1] if self._known else 0
            try:
                seqs = self._write_batch(batch, checkpoint_key, reason)
            except _AnchorError as exc:  # written, but the anchor lags: do not write twice
                self._broken = exc
                raise
            except AuditError as exc:
                with self._cond:
                    self._pending[:0] = batch[: len(batch) - len(extra)]
                self._broken = exc
                self._known = None
                raise
            self._broken = None
            return seqs[-1]

    def _locked(self) -> _FileLock:
        return _FileLock(self.directory / LOCK_NAME)

    def _stat_key(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.log_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _tail(self) -> tuple[int, str]:
        """(seq, hash) to chain onto (must hold the lock); re-checked if the file changed."""
        seq, digest, _old = self._tail_and_format()
        return seq, digest

    def _tail_and_format(self) -> tuple[int, str, bool]:
        """(seq, hash, last record is version 1) to chain onto (must hold the lock)."""
        key = self._stat_key()
        if self._known is not None and key is not None and self._known[0] == key:
            return self._known[1], self._known[2], False
        last = self._tail_checked()
        if not last:
            return 0, GENESIS, False
        return last["seq"], last["hash"], "v" not in last

    def _tail_checked(self) -> dict[str, Any] | None:
        """The last record, after checking it agrees with the head (must hold the lock)."""
        line = read_last_line(self.log_path)
        last: dict[str, Any] | None = None
        if line is not None:
            try:
                last = json.loads(line)
            except ValueError:
                raise AuditError(
                    f"the last record of {self.log_path} is not valid JSON; "
                    "run archive audit verify."
                ) from None
            if (
                not isinstance(last, dict)
                or not isinstance(last.get("seq"), int)
                or last.get("hash") != record_hash(last)
            ):
                raise AuditError(
                    f"the last record of {self.log_path} fails its hash check; "
                    "run archive audit verify."
                )
        head = read_head(self.directory)
        if head is not None:
            last_seq = last["seq"] if last else 0
            if last_seq < head.seq or (last_seq == head.seq and last and last["hash"] != head.hash):
                raise AuditError(
                    f"the audit log ends at seq {last_seq} but its head file records seq "
                    f"{head.seq}: records were removed. Nothing more is appended until "
                    "this is investigated (archive audit verify)."
                )
        elif last is not None:
            raise AuditError(
                f"{self.directory / HEAD_NAME} is missing while the log has records; "
                "run archive audit verify."
            )
        if self.anchor is not None:
            anchor = self.anchor.read()
            last_seq = last["seq"] if last else 0
            rewritten = anchor is not None and anchor.seq == last_seq and last_seq > 0
            if anchor is not None and (
                anchor.seq > last_seq or (rewritten and last["hash"] != anchor.hash)
            ):
                raise AuditError(
                    f"the audit log ends at seq {last_seq} but the archive database's anchor "
                    f"records seq {anchor.seq}: records were removed or rewritten. Nothing more "
                    "is appended until this is investigated (archive audit verify)."
                )
        return last

    def _checkpoint_fields(
        self,
        signing_key: Ed25519PrivateKey,
        covers_seq: int,
        covers_hash: str,
        reason: str = "count",
    ) -> dict[str, Any]:
        signature = signing_key.sign(checkpoint_message(covers_seq, covers_hash))
        return {
            "action": CHECKPOINT_ACTION,
            "outcome": "success",
            "actor": "system",
            "roles": [],
            "source": "local",
            "target": None,
            "detail": {
                "covers_seq": covers_seq,
                "covers_hash": covers_hash,
                "key_id": key_id(public_key_bytes(signing_key)),
                "signature": base64.b64encode(signature).decode(),
                "reason": reason,
            },
        }

    def _chain(
        self,
        batch: list[tuple[str, dict[str, Any]]],
        seq: int,
        prev: str,
        old_format: bool,
        checkpoint_key: Ed25519PrivateKey | None = None,
        reason: str = "request",
    ) -> tuple[list[str], list[int], dict[str, Any] | None, bool, int, str]:
        """Chain and sign `batch` onto (seq, prev): the lines to write, the seq of each
        entry (then of the requested checkpoint), the last checkpoint written (or None),
        whether one was signed, and the new tail (seq, hash). Writes nothing."""
        lines: list[str] = []
        checkpoint: dict[str, Any] | None = None
        seqs: list[int] = []
        signer, kid = self.signer, self._kid
        signed_checkpoint = False

        def add(stamp: str, fields: dict[str, Any]) -> None:
            nonlocal seq, prev, checkpoint, signed_checkpoint
            seq += 1
            record: dict[str, Any] = {
                "seq": seq,
                "timestamp": stamp,
                "prev": prev,
                **fields,
                "v": FORMAT_VERSION,
            }
            body = canonical(record)  # serialised once: hashed, then the line around it
            prev = hashlib.sha256(body).hexdigest()
            sig = sign_record(signer, kid, prev) if signer is not None else None
            lines.append(line_with_hash(body.decode(), prev, sig))
            if fields["action"] == CHECKPOINT_ACTION:
                checkpoint = {"seq": seq, **fields["detail"]}
                signed_checkpoint = True

        if old_format and signer is not None:  # seal the version-1 chain (FORMAT.md 7)
            add(utc_now(), self._checkpoint_fields(signer, seq, prev, "upgrade"))
        for stamp, fields in batch:
            add(stamp, fields)
            seqs.append(seq)
            if signer is not None and seq % self.checkpoint_every == 0:
                add(utc_now(), self._checkpoint_fields(signer, seq, prev))
        if checkpoint_key is not None:
            add(utc_now(), self._checkpoint_fields(checkpoint_key, seq, prev, reason))
            seqs.append(seq)
        elif (
            signer is not None
            and self.checkpoint_seconds > 0
            and not signed_checkpoint
            and time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds
        ):
            add(utc_now(), self._checkpoint_fields(signer, seq, prev, "timer"))
        return lines, seqs, checkpoint, signed_checkpoint, seq, prev

    def _write_batch(
        self,
        batch: list[tuple[str, dict[str, Any]]],
        checkpoint_key: Ed25519PrivateKey | None = None,
        reason: str = "request",
    ) -> list[int]:
        """Chain and sign `batch` onto the tail and write it with one write and one
        fsync; returns the seq of each entry (then of the requested checkpoint)."""
        seq, prev, old_format = self._tail_and_format()
        chained = self._chain(batch, seq, prev, old_format, checkpoint_key, reason)
        lines, seqs, checkpoint, signed_checkpoint, seq, prev = chained
        data = ("\n".join(lines) + "\n").encode()
        size_before: int | None = None
        try:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size_before = os.fstat(fd).st_size
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(28, "short write to the audit log")
                if self.durable:
                    os.fsync(fd)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if checkpoint is None:
                head = read_head(self.directory)
                checkpoint = head.checkpoint if head else None
            payload: dict[str, Any] = {"format": FORMAT_VERSION, "seq": seq, "hash": prev}
            if checkpoint:
                payload["checkpoint"] = checkpoint
            # Group commit: the head's rename is not fsynced (one fsync less per batch,
            # which competed with the storage area's). A power cut can then leave the
            # head one batch behind the fsynced log - never torn (its content is fsynced
            # before the rename), never ahead. A head behind an intact chain is accepted
            # on the next write (which rewrites it) and is a repairable leftover for
            # `archive fsck`; records removed below the head are still refused.
            _atomic_write(
                self.directory / HEAD_NAME,
                json.dumps(payload, sort_keys=True).encode(),
                self.durable,
                sync_dir=self.interval <= 0,
            )
        except OSError as exc:
            self._undo_append(size_before, seq)
            full = exc.errno == errno.ENOSPC
            raise AuditError(
                f"cannot write the audit log in {self.directory} ({exc.strerror}); "
                + (
                    "the data volume is full: free space on it, then retry."
                    if full
                    else "check free space and the data volume."
                )
            ) from None
        self._known = ((st.st_ino, st.st_size, st.st_mtime_ns), seq, prev)
        if signed_checkpoint:
            self._last_checkpoint = time.monotonic()
        if self.anchor is not None:
            try:
                self.anchor.write(seq, prev, FORMAT_VERSION)
            except AuditError as exc:
                self._known = None
                raise _AnchorError(str(exc)) from None
        return seqs

    def _undo_append(self, size_before: int | None, seq: int) -> None:
        """Cut a failed batch off the log (a full disk leaves a partial last line, which
        would block every later append), unless its head was already written. The batch
        stays queued and is written again once the volume has room."""
        if size_before is None:
            return
        try:
            head = read_head(self.directory)
            if head is not None and head.seq >= seq:
                return
            os.truncate(self.log_path, size_before)
        except (OSError, AuditError, ValueError):
            pass  # the partial line is then reported by read_last_line: fail closed

    def _publish_public_key(self, raw: bytes) -> None:
        """Record the signer's public key in clear so verification needs no passphrase."""
        path = self.directory / PUBLIC_KEY_NAME
        with self._locked():
            known = read_public_keys(self.directory)
            if raw in known:
                return
            text = "".join(k.hex() + "\n" for k in [*known, raw])
            try:
                _atomic_write(path, text.encode(), self.durable)
            except OSError as exc:
                raise AuditError(f"cannot write {path} ({exc.strerror}).") from None


def read_public_keys(directory: Path) -> list[bytes]:
    """The public keys stored in clear next to the log (oldest first)."""
    path = Path(directory) / PUBLIC_KEY_NAME
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    keys = []
    for line in text.split():
        try:
            raw = bytes.fromhex(line)
        except ValueError:
            raise AuditError(f"{path} holds something that is not a hex key.") from None
        if len(raw) != 32:
            raise AuditError(f"{path} holds a key that is not 32 bytes.")
        keys.append(raw)
    return keys


class _AnchorError(AuditError):
    """The records were written (log and head) but the database anchor was not updated:
    they must not be queued again; later appends fail until the anchor can be written."""


@dataclass
class _Slot:
    """One synchronous append waiting for a shared write (see AuditLog._append_now)."""

    entry: tuple[str, dict[str, Any]]
    seq: int = 0
    done: bool = False
    error: AuditError | None = None


class _FileLock:
    """flock on the directory's lock file, plus a thread lock (one writer at a time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> _FileLock:
        _process_lock.acquire()
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as exc:
            if self.fd >= 0:
                os.close(self.fd)
            _process_lock.release()
            raise AuditError(f"cannot lock {self.path} ({exc.strerror}).") from None
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        finally:
            _process_lock.release()

"""The append-only, hash-chained, checkpoint-signed audit log (file format v1).

Layout of HOME/data/audit/:

    audit.jsonl   one JSON record per line, append-only
    head.json     the latest seq and hash (and the latest signed checkpoint), replaced
                  atomically after every append: cutting lines off the end of
                  audit.jsonl leaves the head pointing past the end, so it is detected
    public_key    hex Ed25519 public keys (one per line) whose signatures verify the
                  checkpoints; in clear so verification needs no passphrase
    .lock         flock'ed by every writer so that the CLI and the Orthanc plugin,
                  appending concurrently, keep one linear chain

A record is {seq, timestamp, prev, action, outcome, actor, roles, source, target,
detail, hash}; `hash` is SHA-256 over the canonical JSON (sorted keys, no spaces, UTF-8)
of every other field, and `prev` is the previous record's hash (64 zeros for seq 1).
A checkpoint is an ordinary record with action "audit.checkpoint" whose detail carries
covers_seq, covers_hash, key_id and an Ed25519 signature over
"teaching-archive audit checkpoint v1\\n<covers_seq>\\n<covers_hash>".

Trade-off, written down: anyone with write access to the directory can rewrite the whole
chain, the head and the public_key file consistently. The hash chain catches edits that
do not do so; the signed checkpoints catch rewriting before the last checkpoint if the
verifier takes the public key from the keyring (`archive audit verify --keyring`) or
from a copy held elsewhere; exporting the checkpoints (`archive audit show --action
audit.checkpoint --json`) to the School Board anchors the log outside this machine.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from archive.audit.events import AuditError, AuditEvent

FORMAT_VERSION = 1
LOG_NAME = "audit.jsonl"
HEAD_NAME = "head.json"
PUBLIC_KEY_NAME = "public_key"
LOCK_NAME = ".lock"
GENESIS = "0" * 64
CHECKPOINT_ACTION = "audit.checkpoint"
SIGNATURE_CONTEXT = b"teaching-archive audit checkpoint v1\n"
RECORD_FIELDS = (
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
_TAIL_CHUNK = 65536
_process_lock = threading.Lock()


def canonical(record: dict[str, Any]) -> bytes:
    """The exact bytes hashed for a record: every field except `hash`, canonical JSON."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


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


def _atomic_write(path: Path, data: bytes, durable: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class AuditLog:
    """Appends events to the chain in `directory`; safe across threads and processes.

    `signer` (the keyring's audit signing key), when given, signs a checkpoint
    automatically every `checkpoint_every` records. `durable=False` skips fsync (tests
    and benchmarks only: a crash could then lose the last records).
    """

    def __init__(
        self,
        directory: Path | str,
        signer: Ed25519PrivateKey | None = None,
        checkpoint_every: int = 100,
        durable: bool = True,
    ) -> None:
        if checkpoint_every < 2:
            raise ValueError("checkpoint_every must be at least 2")
        self.directory = Path(directory)
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self.durable = durable
        self.log_path = self.directory / LOG_NAME
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

    def append(self, event: AuditEvent) -> int:
        """Validate, chain and durably append one event; returns its seq.

        Raises AuditError if the event is refused or the log cannot be written; callers
        must then refuse the action they were about to audit (fail closed).
        """
        fields = event.to_fields()
        with self._locked():
            last = self._tail_checked()
            seq = self._write(last, fields)
            if self.signer is not None and seq % self.checkpoint_every == 0:
                self._write_checkpoint(self.signer)
        return seq

    def checkpoint(self, signing_key: Ed25519PrivateKey) -> int:
        """Append a signed checkpoint covering the latest record; returns its seq."""
        self._publish_public_key(public_key_bytes(signing_key))
        with self._locked():
            self._tail_checked()
            return self._write_checkpoint(signing_key)

    def last(self) -> tuple[int, str]:
        """(seq, hash) of the last record, (0, GENESIS) for an empty log."""
        with self._locked():
            last = self._tail_checked()
        return (last["seq"], last["hash"]) if last else (0, GENESIS)

    # -- internals ----------------------------------------------------------------

    def _locked(self) -> _FileLock:
        return _FileLock(self.directory / LOCK_NAME)

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
        return last

    def _write(self, last: dict[str, Any] | None, fields: dict[str, Any]) -> int:
        seq = last["seq"] + 1 if last else 1
        record: dict[str, Any] = {
            "seq": seq,
            "timestamp": utc_now(),
            "prev": last["hash"] if last else GENESIS,
            **fields,
        }
        record["hash"] = record_hash(record)
        line = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        data = (line + "\n").encode()
        try:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(28, "short write to the audit log")
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            head = read_head(self.directory)
            checkpoint = head.checkpoint if head else None
            if record["action"] == CHECKPOINT_ACTION and isinstance(record["detail"], dict):
                checkpoint = {"seq": seq, **record["detail"]}
            payload = {"format": FORMAT_VERSION, "seq": seq, "hash": record["hash"]}
            if checkpoint:
                payload["checkpoint"] = checkpoint
            _atomic_write(
                self.directory / HEAD_NAME,
                json.dumps(payload, sort_keys=True).encode(),
                self.durable,
            )
        except OSError as exc:
            raise AuditError(
                f"cannot write the audit log in {self.directory} ({exc.strerror}); "
                "check free space and the data volume."
            ) from None
        return seq

    def _write_checkpoint(self, signing_key: Ed25519PrivateKey) -> int:
        line = read_last_line(self.log_path)
        last = json.loads(line) if line else None
        covers_seq, covers_hash = (last["seq"], last["hash"]) if last else (0, GENESIS)
        signature = signing_key.sign(checkpoint_message(covers_seq, covers_hash))
        fields = {
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
            },
        }
        return self._write(last, fields)

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

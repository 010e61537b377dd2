"""The watch-folder engine: scan, watch, wait for complete files, upload, delete, audit.

One process: watchdog events and an initial scan feed a CompletenessTracker; complete
files go to a small thread pool that uploads them; the outcome decides whether the
source is deleted (confirmed), sealed into the encrypted rejects store and deleted
(refused), or kept and retried with exponential backoff (archive down, disk full, token
refused).

Every read, overwrite and delete in the drop folder goes through `safefs.DropRoot`:
symbolic links, FIFOs, devices and sockets are skipped and reported (one line and an
audit record), never read, written or deleted through, and nothing outside the drop
folder is ever touched, even if a folder is swapped for a link while we walk.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from archive.audit import AuditEvent, AuditLog, audit_log_for
from archive.audit.events import AuditError
from archive.config import ArchiveConfig
from archive.intake.completeness import CompletenessTracker, signature
from archive.intake.expand import (
    dicomdir_references,
    extract_zip,
    is_dicomdir,
    is_zip,
    private_workdir,
    remove_workdir,
)
from archive.intake.journal import Fingerprints, Journal, label
from archive.intake.rejects import REASON_SUFFIX, RejectStore
from archive.intake.safefs import DropRoot, NotRegular, OutsideRoot
from archive.intake.settings import IntakeError, IntakeSettings
from archive.intake.uploader import Uploader, UploadResult, Verdict

PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart", ".swp", "~")


@dataclass
class Summary:
    """What one run did, file by file counted once per outcome."""

    stored: int = 0  # confirmed stored
    already: int = 0  # the archive already had it (a re-upload, or a duplicate in flight)
    held: int = 0  # confirmed held in quarantine
    duplicates: int = 0  # bytes already confirmed: source deleted without upload
    rejected: int = 0  # sealed into the encrypted rejects store, source deleted
    denied: int = 0  # permission denied: left in place, reported
    skipped: int = 0  # links, FIFOs, devices, sockets: never read, left in place, reported
    migrated: int = 0  # clear rejects of an earlier version sealed at start
    retried: int = 0  # retry attempts scheduled (archive down/full, token refused)
    deleted: int = 0  # sources deleted after confirmation
    kept: int = 0  # still waiting for a retry when the run ended
    last_problem: str = ""

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


@dataclass
class _Retry:
    due: float
    attempts: int = 0


@dataclass
class _Dicomdir:
    references: list[Path] = field(default_factory=list)


def is_candidate(path: Path) -> bool:
    """Skip half-written temp names, hidden files and our own reason files."""
    name = path.name
    return not (
        name.startswith(".")
        or name.endswith(REASON_SUFFIX)
        or name.lower().endswith(PARTIAL_SUFFIXES)
    )


class _Events(FileSystemEventHandler):
    def __init__(self, inbox: queue.Queue) -> None:
        self.inbox = inbox

    def on_created(self, event: FileSystemEvent) -> None:
        self.inbox.put((event.src_path, False, event.is_directory))

    def on_modified(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self.inbox.put((event.src_path, False, False))

    def on_attrib(self, event: FileSystemEvent) -> None:  # chmod: retry a denied file
        if not event.is_directory:
            self.inbox.put((event.src_path, False, False))

    def on_moved(self, event: FileSystemEvent) -> None:
        # A rename into place is atomic: the destination is complete.
        self.inbox.put((event.dest_path, True, event.is_directory))

    def on_closed(self, event: FileSystemEvent) -> None:
        self.inbox.put((event.src_path, True, False))


class Intake:
    """Watch `watch_dir` and ingest what lands there into the archive of `config`."""

    def __init__(
        self,
        config: ArchiveConfig,
        watch_dir: Path,
        settings: IntakeSettings,
        uploader: Uploader,
        *,
        rejects_dir: Path | None = None,
        overwrite: bool = False,
        journal: Journal | None = None,
        audit: AuditLog | None = None,
        actor: str = "intake",
        on_progress: Callable[[str, Summary], None] | None = None,
        keyring=None,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.watch_dir = watch_dir.resolve()
        self.settings = settings
        self.uploader = uploader
        self.rejects_dir = (rejects_dir or config.home.data_dir / "intake" / "rejects").resolve()
        self.overwrite = overwrite
        if keyring is None:  # fail closed: no keyring, no watcher (rejects are sealed)
            from archive.runtime import open_keyring

            keyring = open_keyring(config, prompt=False)
        self.fp = Fingerprints(keyring.pseudonym_key)
        if journal is None:
            journal = Journal.open(config.home.db_path, self.fp)
        elif not journal.converted:
            journal.converted = journal._key_rows(self.fp)
        self.journal = journal
        try:
            self.root = DropRoot(self.watch_dir)
        except NotRegular:
            raise IntakeError(f"{watch_dir} is a link; give the drop folder itself.") from None
        self.on_notice = on_notice or (lambda line: None)
        if audit is None:
            # Group commit, as in the Orthanc plugin: the records of ~50 ms are written
            # with one fsync, so the audit no longer halves throughput. The window is
            # accountability only: a source is deleted only after the archive confirmed
            # it stored (durably) the instance; a power cut may lose the last 50 ms of
            # intake records, never an instance nor the chain. Flushed at every stop.
            audit = audit_log_for(config.home)
            audit.enable_group_commit(interval=0.05)
        self.audit = audit
        self.actor = actor
        self.on_progress = on_progress or (lambda kind, summary: None)
        self.summary = Summary()
        self.tracker = CompletenessTracker(settings.stable_seconds, settings.settle_seconds)
        self._inbox: queue.Queue = queue.Queue()
        self._retries: dict[Path, _Retry] = {}
        self._denied: set[Path] = set()
        self._dicomdirs: dict[Path, _Dicomdir] = {}
        self._inflight: dict[Path, Future] = {}
        self._lock = threading.Lock()
        self._skipped: set[Path] = set()
        self.rejects = RejectStore(self.rejects_dir, keyring, self.journal)
        self._migrate_clear_rejects()

    def _migrate_clear_rejects(self) -> None:
        """Seal the clear rejects an earlier version left (default folder and --rejects)."""
        legacy = {self.rejects_dir, (self.config.home.data_dir / "intake" / "rejects").resolve()}
        n = sum(self.rejects.migrate_clear(folder) for folder in sorted(legacy))
        if self.journal.converted or n:
            detail = {"rejects_sealed": n, "fingerprints_keyed": self.journal.converted}
            self._event("intake.migrated", "success", detail)
            self.audit.flush()
        if n:
            self.summary.migrated = n
            self.on_notice(f"sealed {n} clear reject(s) left by an earlier version; see "
                           "`archive rejects list`.")  # fmt: skip

    def close(self) -> None:
        self.root.close()

    # -- driving ------------------------------------------------------------------

    def run_once(self) -> Summary:
        """Ingest what is in the folder now (waiting for files still being written)."""
        self.scan(self.watch_dir)
        self._loop(threading.Event(), once=True)
        return self.summary

    def watch(self, stop: threading.Event) -> Summary:
        """Scan, then follow the folder until `stop` is set."""
        observer = Observer()
        observer.schedule(_Events(self._inbox), str(self.watch_dir), recursive=True)
        observer.start()
        try:
            self.scan(self.watch_dir)
            self._loop(stop, once=False)
        finally:
            observer.stop()
            observer.join(timeout=5)
        return self.summary

    def scan(self, directory: Path) -> None:
        """Offer every file below `directory` (the initial scan, or a moved-in folder),
        walking by descriptor without following links; report what is not a file."""
        now = time.monotonic()
        try:
            entries = list(self.root.walk(directory))
        except (OutsideRoot, NotRegular):
            return
        for path, kind in entries:
            if self._inside_rejects(path):
                continue
            if kind is not None:
                if is_candidate(path):
                    self._skip(path, kind)
                continue
            self._offer(path, now, closed=False, from_scan=True)

    # -- the loop -----------------------------------------------------------------

    def _inside_rejects(self, path: Path) -> bool:
        return path == self.rejects_dir or self.rejects_dir in path.parents

    def _offer(self, path: Path, now: float, closed: bool, from_scan: bool = False) -> None:
        if not is_candidate(path) or self._inside_rejects(path) or not self.root.inside(path):
            return
        if not from_scan:
            kind = self._kind(path)
            if kind == "gone":
                return
            if kind is not None:
                self._skip(path, kind)
                return
        self._skipped.discard(path)
        self._denied.discard(path)
        self._retries.pop(path, None) if not from_scan else None
        if from_scan:  # already unchanged for long enough (landed before we looked)
            sig = signature(path)
            if sig and time.time() - sig[1] / 1e9 >= self.settings.stable_seconds:
                now -= self.settings.stable_seconds
        self.tracker.seen(path, now, closed=closed)

    def _drain(self, now: float) -> None:
        while True:
            try:
                raw, closed, is_dir = self._inbox.get_nowait()
            except queue.Empty:
                return
            path = Path(os.fsdecode(raw))
            if is_dir:
                if self._kind(path) == "folder" and not self._inside_rejects(path):
                    self.scan(path)
                elif self._kind(path) not in (None, "gone") and is_candidate(path):
                    self._skip(path, self._kind(path) or "")
            else:
                self._offer(path, now, closed)

    def _kind(self, path: Path) -> str | None:
        """None for a regular file below the root; "gone"; else what it is instead."""
        import stat as _stat

        from archive.intake.safefs import kind_of

        try:
            st = self.root.lstat(path)
        except (FileNotFoundError, OutsideRoot):
            return "gone"
        except NotRegular as exc:
            return exc.kind
        except OSError:
            return None  # e.g. permission denied on a folder: the read reports it
        return None if _stat.S_ISREG(st.st_mode) else kind_of(st.st_mode)

    def _skip(self, path: Path, kind: str) -> None:
        """A link or special file: never read, written or deleted; reported once."""
        self.tracker.forget(path)
        self._retries.pop(path, None)
        with self._lock:
            if path in self._skipped:
                return
            self._skipped.add(path)
        key = label(self.fp.path(path))
        self._count("skipped")
        self._event("intake.skipped", "failure", {"path": key, "kind": kind})
        self.on_notice(
            f"skipped a {kind} in the drop folder (path label {key}): the watcher never "
            f"follows links nor reads special files; copy the file itself in "
            f"(`find {self.watch_dir} ! -type f ! -type d` lists them)."
        )

    def _loop(self, stop: threading.Event, once: bool) -> None:
        with ThreadPoolExecutor(self.settings.workers, thread_name_prefix="intake") as pool:
            while True:
                now = time.monotonic()
                self._drain(now)
                for path in self.tracker.ready(now):
                    self._submit(pool, path)
                for path, retry in list(self._retries.items()):
                    if retry.due <= now and path not in self._inflight:
                        if once and retry.attempts >= self.settings.once_attempts:
                            continue
                        self._submit(pool, path)
                for path, future in list(self._inflight.items()):
                    if future.done():
                        del self._inflight[path]
                        exc = future.exception()
                        if exc is not None:
                            self._schedule_retry(path, f"internal error: {type(exc).__name__}")
                self._finish_dicomdirs()
                if stop.is_set():
                    break
                if (
                    once
                    and not self._inflight
                    and not len(self.tracker)
                    and not any(
                        r.attempts < self.settings.once_attempts for r in self._retries.values()
                    )
                ):
                    break
                stop.wait(0.02)
            for future in list(self._inflight.values()):
                future.result() if future.exception() is None else None
        self._inflight.clear()
        self.summary.kept = len(self._retries)
        self.audit.flush()  # every record of this run is written before we report it

    def _submit(self, pool: ThreadPoolExecutor, path: Path) -> None:
        if path in self._inflight:
            self.tracker.seen(path, time.monotonic())  # look again once it is done
            return
        self._inflight[path] = pool.submit(self._process, path)

    # -- one file -----------------------------------------------------------------

    def _count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            setattr(self.summary, kind, getattr(self.summary, kind) + n)
        self.on_progress(kind, self.summary)

    def _event(self, action: str, outcome: str, detail: dict) -> None:
        self.audit.append(
            AuditEvent(action, outcome, actor=self.actor, source="watch", detail=detail)
        )

    def _relative(self, path: Path) -> Path:
        try:
            return path.relative_to(self.watch_dir)
        except ValueError:
            return Path(path.name)

    def _process(self, path: Path) -> None:
        read = self._read(path)
        if read is None:
            self._retries.pop(path, None) if path not in self._denied else None
            return
        data, _sig = read
        if is_dicomdir(path, data):
            self._register_dicomdir(path, data)
            return
        if is_zip(path, data):
            self._process_zip(path, read)
            return
        self._process_file(path, read)

    def _read(self, path: Path) -> tuple[bytes, tuple[int, int]] | None:
        """The bytes and (size, mtime_ns) of a regular file below the drop folder, or
        None after handling a refusal (gone, permission denied, link, special file)."""
        try:
            data, st = self.root.read(path)
        except PermissionError:
            self._deny(path)
            return None
        except (FileNotFoundError, OutsideRoot):
            return None
        except NotRegular as exc:
            self._skip(path, exc.kind)
            return None
        return data, (st.st_size, st.st_mtime_ns)

    def _deny(self, path: Path) -> None:
        key = label(self.fp.path(path))
        self._retries.pop(path, None)
        if path not in self._denied:
            self._denied.add(path)
            self._count("denied")
            self._event("intake.denied", "failure", {"path": key, "reason": "permission denied"})
            self.on_notice(
                f"permission denied on a file in the drop folder (path label {key}): the "
                "watcher's user cannot read it; fix its permissions (it is retried when it "
                "changes)."
            )

    def _process_file(self, path: Path, read: tuple[bytes, tuple[int, int]]) -> None:
        data, sig = read
        sha = self.fp.content(data)
        entry = self.journal.record(self.fp.path(path), sig[0], sig[1], sha)
        detail = {"entry": entry.id, "path": label(entry.path_key), "bytes": sig[0]}
        previous = self.journal.confirmed(sha)
        if previous is not None:
            if entry.state != "confirmed":
                self.journal.confirm(entry.id, sha, "duplicate")
                self._event("intake.duplicate", "success", {**detail, "earlier": previous})
            self._count("duplicates")
            self._delete(path, sig, entry.id, detail)
            return
        attempts = self.journal.attempt(entry.id)
        result = self.uploader.upload(data)
        self._settle(path, sig, entry.id, sha, result, attempts, detail)

    def _settle(self, path: Path, sig: tuple[int, int], entry_id: int, sha: str,
                result: UploadResult, attempts: int, detail: dict) -> None:  # fmt: skip
        if result.verdict.confirmed:
            self.journal.confirm(entry_id, sha, result.verdict.value)
            held = result.verdict is Verdict.HELD
            self._event("intake.held" if held else "intake.stored", "success",
                        {**detail, "status": result.verdict.value})  # fmt: skip
            self._count(_kind(result.verdict))
            self._delete(path, sig, entry_id, detail)
        elif result.verdict is Verdict.REJECTED:
            if signature(path) != sig:  # still being written: not a bad file yet
                self.tracker.seen(path, time.monotonic())
                return
            self._reject(path, entry_id, result.reason, detail, result.http_status)
        else:
            self.journal.mark(entry_id, "retry", result.reason)
            self._schedule_retry(path, result.reason, attempts, detail)

    def _reject(self, path: Path, entry_id: int | None, reason: str, detail: dict,
                status: int | None = None, member: bytes | None = None) -> None:  # fmt: skip
        """Seal the refused file into the encrypted rejects store, then delete the source
        (a zip member has no source of its own: it lives in our work folder)."""
        if member is None:
            read = self._read(path)
            if read is None:
                return
            data, sig = read
        else:
            data, sig = member, None
        try:
            reject_id = self.rejects.put(data, str(self._relative(path)), reason, entry_id)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._schedule_retry(path, "no space left to seal a reject", detail=detail)
                return
            raise
        if sig is not None:
            try:
                self.root.remove(path, sig, overwrite=self.overwrite)
            except (NotRegular, OutsideRoot):
                pass
        if entry_id is not None:
            self.journal.mark(entry_id, "rejected", reason)
        self._retries.pop(path, None)
        extra = {"http_status": status} if status else {}
        self._event("intake.rejected", "failure",
                    {**detail, "reason": reason, "reject": reject_id, **extra})  # fmt: skip
        self._count("rejected")

    def _schedule_retry(self, path: Path, reason: str, attempts: int | None = None,
                        detail: dict | None = None) -> None:  # fmt: skip
        retry = self._retries.get(path) or _Retry(0.0)
        retry.attempts = attempts if attempts is not None else retry.attempts + 1
        retry.due = time.monotonic() + self.settings.backoff.delay(retry.attempts)
        self._retries[path] = retry
        with self._lock:
            self.summary.last_problem = reason
        self._count("retried")
        try:
            self._event("intake.retry", "failure",
                        {**(detail or {"path": label(self.fp.path(path))}), "reason": reason,
                         "attempt": retry.attempts})  # fmt: skip
        except AuditError:
            pass  # the file is kept either way; nothing is deleted without an audit

    def _delete(self, path: Path, sig: tuple[int, int], entry_id: int | None,
                detail: dict) -> None:  # fmt: skip
        """Delete a confirmed source, unless it changed since it was read. Only ever a
        regular file below the drop folder, reached without following a link."""
        self._retries.pop(path, None)
        try:
            removed = self.root.remove(path, sig, overwrite=self.overwrite)
        except (NotRegular, OutsideRoot) as exc:
            self._skip(path, getattr(exc, "kind", "path outside the drop folder"))
            return
        if not removed:
            if signature(path) is not None:
                self.tracker.seen(path, time.monotonic())  # a new version: ingest it too
            return
        if entry_id is not None:
            self.journal.mark(entry_id, "deleted")
        self._event("intake.deleted", "success", {**detail, "overwritten": self.overwrite})
        self._count("deleted")

    # -- containers ---------------------------------------------------------------

    def _register_dicomdir(self, path: Path, data: bytes) -> None:
        """DICOMDIR: ingest what it references (below the drop folder only); delete it
        once they are all gone."""
        key = label(self.fp.path(path))
        try:
            references = dicomdir_references(path, data, root=self.watch_dir)
        except Exception:  # noqa: BLE001 - an unreadable DICOMDIR is a reject, not a crash
            self._reject(path, None, "unreadable DICOMDIR", {"path": key})
            return
        with self._lock:
            self._dicomdirs[path] = _Dicomdir(references)
        self._event("intake.dicomdir", "success", {"path": key, "references": len(references)})
        now = time.monotonic()
        for ref in references:
            if ref not in self._inflight:
                self._inbox.put((str(ref), False, False))
        del now

    def _finish_dicomdirs(self) -> None:
        with self._lock:
            done = [p for p, d in self._dicomdirs.items()
                    if not any(r not in self._skipped and self._kind(r) != "gone"
                               for r in d.references)]  # fmt: skip
            for p in done:
                del self._dicomdirs[p]
        for path in done:
            sig = signature(path)
            if sig is not None:
                self._delete(path, sig, None, {"path": label(self.fp.path(path)),
                                               "kind": "dicomdir"})  # fmt: skip

    def _process_zip(self, path: Path, read: tuple[bytes, tuple[int, int]]) -> None:
        data, sig = read
        sha = self.fp.content(data)
        entry = self.journal.record(self.fp.path(path), sig[0], sig[1], sha)
        detail = {"entry": entry.id, "path": label(entry.path_key), "kind": "zip"}
        if self.journal.confirmed(sha) is not None:
            self._delete(path, sig, entry.id, detail)
            return
        try:
            workdir = private_workdir(self.config.home.data_dir)
        except OSError as exc:
            self._schedule_retry(path, f"cannot make a work folder ({exc.strerror})",
                                 detail=detail)  # fmt: skip
            return
        try:
            try:
                members = extract_zip(data, workdir)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    self._schedule_retry(path, "no space left to unpack the zip", detail=detail)
                    return
                raise
            except Exception:  # noqa: BLE001 - a corrupt zip is the sender's problem
                self._reject(path, entry.id, "corrupt or unreadable zip file", detail)
                return
            pending = False
            for n, member in enumerate(members, start=1):
                if not self._zip_member(path, n, member, entry.id):
                    pending = True
            if pending:
                self.journal.mark(entry.id, "retry", "some members not confirmed yet")
                self._schedule_retry(path, "zip members waiting for the archive", detail=detail)
                return
            self.journal.confirm(entry.id, sha, "zip")
            self._event("intake.unpacked", "success", {**detail, "members": len(members)})
            self._delete(path, sig, entry.id, detail)
        finally:
            remove_workdir(workdir)

    def _zip_member(self, zip_path: Path, n: int, member: Path, zip_entry: int) -> bool:
        """Upload one member; True once it is confirmed or safely in the rejects folder."""
        data = member.read_bytes()
        sha = self.fp.content(data)
        entry = self.journal.record(self.fp.path(f"{zip_path}#{n}"), len(data), 0, sha)
        detail = {"entry": entry.id, "zip_entry": zip_entry, "member": n}
        if self.journal.confirmed(sha) is not None:
            if entry.state != "confirmed":
                self.journal.confirm(entry.id, sha, "duplicate")
                self._count("duplicates")
            return True
        if entry.state == "rejected":
            return True
        self.journal.attempt(entry.id)
        result = self.uploader.upload(data)
        if result.verdict.confirmed:
            self.journal.confirm(entry.id, sha, result.verdict.value)
            held = result.verdict is Verdict.HELD
            self._event("intake.held" if held else "intake.stored", "success",
                        {**detail, "status": result.verdict.value})  # fmt: skip
            self._count(_kind(result.verdict))
            return True
        if result.verdict is Verdict.REJECTED:
            relative = self._relative(zip_path)
            target = relative.with_name(f"{relative.name}.member{n:04d}")
            self._reject(self.watch_dir / target, entry.id, result.reason, detail,
                         result.http_status, member=data)  # fmt: skip
            return True
        self.journal.mark(entry.id, "retry", result.reason)
        with self._lock:
            self.summary.last_problem = result.reason
        return False


def _kind(verdict: Verdict) -> str:
    return {Verdict.HELD: "held", Verdict.ALREADY: "already"}.get(verdict, "stored")


# Overwriting (--overwrite-before-delete) lives in safefs.DropRoot.remove: zeros and
# fsync through a descriptor opened with O_NOFOLLOW and checked to be the same inode.
# Limits: on SSDs (wear levelling, over-provisioning), copy-on-write or journaling
# filesystems (btrfs, ZFS, ext4 data=journal), snapshots and backups, the old blocks can
# survive; only full-disk encryption of the drop folder's disk protects them.

"""Run Orthanc with the archive plugin for one home: lock, preflight, start, wait, stop.

`archive serve` is a foreground supervisor. It refuses early, with one clear line, when
Orthanc is missing, a port is taken or another serve holds the home, so a newcomer never
has to read Orthanc's log to learn why nothing started.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from archive.config import NODE_DICOM_PORT_ENV, NODE_ENV, NODE_HTTP_PORT_ENV, ArchiveConfig
from archive.errors import ArchiveError
from archive.paths import OPS_DIR
from archive.runtime import PASSPHRASE_FD_ENV
from archive.vault import Keyring, VolumeStatus, keyring_path
from archive.vault import volume as vol
from archive.vault.errors import KeyringMissingError
from archive.vault.passphrase import obtain_passphrase

HEALTH_ROUTE = "/teaching/health"


class ServeError(ArchiveError):
    """Orthanc could not be started or did not become ready."""


def find_orthanc() -> str:
    """Orthanc's binary; ARCHIVE_ORTHANC overrides it (another build, or tests)."""
    override = os.environ.get("ARCHIVE_ORTHANC")
    if override:
        path = override if os.access(override, os.X_OK) else None
    else:
        path = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/bin")
    if not path:
        raise ServeError(
            "Orthanc is not installed. Run `make setup` (it installs Debian's orthanc)."
        )
    return path


def check_plugin_installed(plugin: Path) -> None:
    if not plugin.is_file():
        raise ServeError(
            f"Orthanc's Python plugin is missing ({plugin}). Run `make setup` "
            "(it installs Debian's orthanc-python)."
        )


def check_port_free(host: str, port: int, what: str) -> None:
    """Fail before starting Orthanc if the port is taken; Orthanc's own message is obscure."""
    bind_host = "0.0.0.0" if host not in ("127.0.0.1", "localhost") else "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind_host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise ServeError(
                    f"{what} port {port} is already in use. Stop the program using it, or set "
                    f"another port in archive.toml."
                ) from None
            raise


class HomeLock:
    """An exclusive lock on the home so that two `serve` never share one index."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held while serving
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            handle.close()
            raise ServeError(
                f"Another `archive serve` (pid {pid}) is already running on this home. "
                "Stop it first (Ctrl-C in its terminal, or kill that pid)."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    @staticmethod
    def holder(path: Path) -> int | None:
        """The pid holding the lock, or None when no serve runs on the home."""
        if not path.exists():
            return None
        with open(path, "a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                text = handle.read().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None


def base_url(config: ArchiveConfig) -> str:
    scheme = "https" if config.http.tls else "http"
    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "localhost") else config.http.host
    return f"{scheme}://{host}:{config.http.port}"


def orthanc_facing(config: ArchiveConfig, internal_port: int) -> ArchiveConfig:
    """The configuration Orthanc itself is rendered with behind nginx (always in front):
    plain HTTP at the internal port, RemoteAccessAllowed false, so it answers 401 to
    every peer other than 127.0.0.1 before any route. Orthanc never gets SslEnabled:
    1.10.1 segfaults on the first HTTPS request."""
    http = replace(config.http, host="127.0.0.1", port=internal_port, tls=False)
    return replace(config, http=http)


def health(config: ArchiveConfig, timeout: float = 2.0) -> dict | None:
    """The plugin's health answer, or None when nothing (or not our plugin) answers."""
    if config.http.tls:
        return _health_pinned(config, timeout)
    try:
        with urllib.request.urlopen(  # noqa: S310 - our own loopback URL
            base_url(config) + HEALTH_ROUTE, timeout=timeout
        ) as response:
            return json.loads(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def is_up(answer: dict | None) -> bool:
    """Whether a health answer says the plugin is up. Anonymous callers get only
    {"status": "ok"} (minimal disclosure, plugins/health.py)."""
    return isinstance(answer, dict) and answer.get("status") == "ok"


def orthanc_version() -> str | None:
    """The installed Orthanc's version, asked from its binary (health tells staff only)."""
    try:
        out = subprocess.run(
            [find_orthanc(), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError, ServeError):
        return None
    words = out.splitlines()[0].split() if out else []
    return words[-1] if len(words) == 2 and "Orthanc" in words[0] else None


def stored_counts(config: ArchiveConfig) -> dict | None:
    """Studies, series and instances stored, read from the vault's ledger in the
    archive's own database (no request to the running archive), or None."""
    from archive import db
    from archive.vault.ledger import InstanceLedger

    try:
        conn = db.open_database(config)
    except Exception:  # noqa: BLE001 - status must answer even so
        return None
    try:
        return InstanceLedger(conn).counts()
    except Exception:  # noqa: BLE001
        return None
    finally:
        conn.close()


def _health_pinned(config: ArchiveConfig, timeout: float) -> dict | None:
    """Health through the TLS terminator, trusting exactly the home's certificate: the
    peer's certificate must have the SHA-256 of HOME/keys/https.pem (a school
    certificate need not name 127.0.0.1 nor chain to a CA this machine trusts)."""
    from archive.access.tls import certificate_path
    from archive.serve import tls_proxy

    expected = tls_proxy.certificate_fingerprint(certificate_path(config.home))
    if expected is None:
        return None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    host = base_url(config).split("://", 1)[1].rsplit(":", 1)[0]
    connection = http.client.HTTPSConnection(
        host, config.http.port, timeout=timeout, context=context
    )
    try:
        connection.connect()
        der = connection.sock.getpeercert(binary_form=True) if connection.sock else None
        if der is None or hashlib.sha256(der).hexdigest() != expected:
            return None
        connection.request("GET", HEALTH_ROUTE)
        response = connection.getresponse()
        if response.status != 200:
            return None
        return json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def orthanc_environment(config: ArchiveConfig) -> dict[str, str]:
    """Orthanc's environment: TCP_NODELAY (measured 13x faster C-STORE) and the home."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    env["ARCHIVE_HOME"] = str(config.home.root)
    env["TMPDIR"] = str(config.home.tmp_dir)
    # The node, so the plugin loads the same view of the home (run dir, log, ports).
    env[NODE_ENV] = str(config.node)
    env[NODE_HTTP_PORT_ENV] = str(config.http.port)
    env[NODE_DICOM_PORT_ENV] = str(config.dicom.port)
    env.pop("PGPASSWORD", None)  # only PGPASSFILE (set by serve) may carry a password
    env.pop("PGPASSFILE", None)
    return env


def write_pgpass(config: ArchiveConfig, password: str) -> Path:
    """A libpq password file (0600) in this node's run directory, named to Orthanc by
    PGPASSFILE: the PostgreSQL plugin connects without a Password key, so the password
    is in no JSON, argv, environment value or log. Removed again when serve stops."""

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace(":", "\\:")

    db = config.database
    path = config.home.run_dir / "pgpass"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"*:*:{esc(db.database)}:{esc(db.user)}:{esc(password)}\n")
    return path


def unlock_keyring(config: ArchiveConfig, *, interactive: bool) -> tuple[Keyring, str]:
    """Open the home's keyring before anything starts, so that a wrong passphrase, a
    missing keyring or a corrupt one is one clear line and no data is touched (opening
    never writes). The passphrase comes from the configured source, else a prompt when
    `interactive` (stdin is a terminal)."""
    path = keyring_path(config.home.keys_dir)
    if not path.exists():
        raise KeyringMissingError(
            f"No keyring at {path}; nothing was started. Restore it with `archive keys "
            f"restore --home {config.home.root} --backup FILE` (or, for a new empty "
            f"archive, create one with `archive keys init`)."
        )
    passphrase = obtain_passphrase(config, prompt=interactive)
    return Keyring.open(path, passphrase), passphrase


def passphrase_pipe(passphrase: str) -> int:
    """A pipe holding the passphrase; returns its read end for Orthanc to inherit.

    Never argv (visible in /proc/PID/cmdline), never the environment's value
    (/proc/PID/environ, inherited by children), never a file: the plugin reads the fd
    named by ARCHIVE_KEYRING_PASSPHRASE_FD once and closes it."""
    data = passphrase.encode("utf-8")
    read_fd, write_fd = os.pipe()
    try:
        if len(data) >= 65536:  # larger than a pipe buffer: would block here
            raise ServeError("The keyring passphrase is unreasonably long (64 KiB or more).")
        os.write(write_fd, data)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return read_fd


@dataclass
class VolumeDecision:
    """What protects HOME/data while this serve runs, and whether serve mounted it."""

    state: VolumeStatus
    mounted_here: bool
    unencrypted: bool


def prepare_volume(
    config: ArchiveConfig, keyring: Keyring, *, allow_unencrypted: bool
) -> VolumeDecision:
    """Check (and for gocryptfs, mount) the encrypted volume holding HOME/data.

    gocryptfs: serve mounts HOME/volume on HOME/data with the keyring's volume secret
    when it is not mounted yet (the volume lives and dies with the keyring, so no second
    secret to manage), and unmounts what it mounted when it stops. luks: the data
    directory must already be a mounted dm-crypt device (ops/luks-provision.sh). A plain
    data directory (kind "none", or a volume that cannot be used) is refused unless
    unencrypted running was allowed explicitly."""
    home = config.home
    kind = config.volume.kind
    state = vol.status(home)
    if kind == "gocryptfs":
        if state.kind == "gocryptfs" and state.mounted:
            return VolumeDecision(state, False, False)
        if state.mounted:
            raise ServeError(
                f"volume.kind is gocryptfs but {home.data_dir} is a {state.detail}; unmount "
                f"it, then serve again."
            )
        state = vol.mount(home, keyring.volume_secret)  # VolumeError: one clear line
        return VolumeDecision(state, True, False)
    if kind == "luks":
        if state.kind == "luks" and state.encrypted:
            return VolumeDecision(state, False, False)
        raise ServeError(
            f"volume.kind is luks but {home.data_dir} is not a mounted LUKS (dm-crypt) "
            f"volume ({state.detail}); open and mount it first (see ops/LUKS.md)."
        )
    if state.encrypted:  # kind "none" in archive.toml, but mounted on an encrypted volume
        return VolumeDecision(state, False, False)
    if not allow_unencrypted:
        raise ServeError(
            "The data directory is not on an encrypted volume. Create one with "
            "`archive volume create --home ...` and set volume.kind, or pass "
            "--allow-unencrypted-volume for a throwaway demo (this is recorded)."
        )
    return VolumeDecision(state, False, True)


def release_volume(config: ArchiveConfig, decision: VolumeDecision | None) -> str | None:
    """Unmount what serve mounted; returns a warning line when that fails."""
    if decision is None or not decision.mounted_here:
        return None
    try:
        vol.unmount(config.home)
    except ArchiveError as exc:
        return str(exc)
    return None


def start_orthanc(
    config: ArchiveConfig,
    extra_env: dict[str, str] | None = None,
    *,
    pass_fds: tuple[int, ...] = (),
) -> subprocess.Popen:
    orthanc = find_orthanc()
    log = open(config.home.orthanc_log, "ab")  # noqa: SIM115 - handed to the child
    env = orthanc_environment(config)
    env.pop(PASSPHRASE_FD_ENV, None)
    env.update(extra_env or {})
    try:
        return subprocess.Popen(
            [orthanc, "--no-jobs", str(config.home.orthanc_config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(config.home.run_dir),
            pass_fds=pass_fds,
        )
    finally:
        log.close()


@dataclass
class Readiness:
    ready: bool
    detail: dict | None
    log_tail: str


def wait_ready(
    config: ArchiveConfig,
    process: subprocess.Popen,
    timeout: float = 60.0,
    cancel: Callable[[], bool] | None = None,
) -> Readiness:
    """Until the plugin answers health, the process exits, `timeout` or `cancel()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (cancel and cancel()):
        if process.poll() is not None:
            return Readiness(False, None, log_tail(config.home.orthanc_log))
        answer = health(config, timeout=1.0)
        if is_up(answer):
            return Readiness(True, answer, "")
        time.sleep(0.1)
    return Readiness(False, None, log_tail(config.home.orthanc_log))


REFUSAL_MARK = "teaching-archive: refusing to start: "


def plugin_refusal(path: Path, since: int = 0) -> str | None:
    """The plugin's own one-line reason for refusing to start, from Orthanc's log
    (only what this start wrote: from byte `since` on)."""
    if not path.exists():
        return None
    with open(path, "rb") as handle:
        handle.seek(since)
        text = handle.read().decode("utf-8", errors="replace")
    found = None
    for line in text.splitlines():
        if REFUSAL_MARK in line:
            found = line.split(REFUSAL_MARK, 1)[1].strip()
    return found


def log_tail(path: Path, lines: int = 8) -> str:
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def stop_orthanc(process: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM lets Orthanc close its index cleanly; SIGKILL only if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


# -- supervision ---------------------------------------------------------------------


def exit_reason(returncode: int | None) -> str:
    """A person's words for how a child ended: "killed by SIGKILL", "exit code 1"."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    if returncode > 128 and returncode - 128 in {s.value for s in signal.Signals}:
        # a shell or wrapper reporting a signal the POSIX way (139 = 128 + SIGSEGV)
        return f"exit code {returncode} ({signal.Signals(returncode - 128).name})"
    return f"exit code {returncode}"


class SupervisorGaveUp(ServeError):
    """A child kept failing right after each restart; serve stops everything."""


@dataclass
class Child:
    """One process `archive serve` keeps running (Orthanc, nginx, a DICOM front...).

    `launch` starts it and returns once it serves (raising ArchiveError, or returning a
    process that already exited, when it cannot); `halt` stops it cleanly. Both are
    called again for every restart, so `launch` must rebuild whatever a start consumes
    (e.g. the passphrase pipe)."""

    name: str
    launch: Callable[[], subprocess.Popen]
    halt: Callable[[subprocess.Popen], object]
    front: bool = False  # a front door (nginx, a DICOM front): stopped first
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    fast_failures: int = 0
    last_exit: str | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


@dataclass(frozen=True)
class ChildEvent:
    """What the supervisor saw and did: `kind` is "exited", "restarted" or "gave_up"."""

    kind: str
    child: str
    reason: str
    returncode: int | None = None
    uptime: float = 0.0
    attempt: int = 0


@dataclass
class Supervisor:
    """Keeps several children running: a child that exits unexpectedly is restarted,
    with a growing pause after each failure that came soon after a start (`backoff`),
    and after `max_fast_failures` such failures in a row the supervisor gives up
    (SupervisorGaveUp) instead of looping. A child that ran longer than `fast_window`
    seconds before it died starts a fresh count. `on_event` hears every exit, restart
    and give-up (the CLI prints a line and writes an audit record)."""

    on_event: Callable[[ChildEvent], None] = lambda event: None  # noqa: E731
    max_fast_failures: int = 5
    fast_window: float = 30.0
    backoff: tuple[float, ...] = (0.25, 1.0, 2.0, 4.0, 8.0)  # the first: a group SIGTERM lands
    children: list[Child] = field(default_factory=list)

    def start(self, child: Child) -> Child:
        """Start a child for the first time (errors propagate: nothing to restart yet)."""
        child.process = child.launch()
        child.started_at = time.monotonic()
        self.children.append(child)
        return child

    def poll(self, stopping: Callable[[], bool] = lambda: False) -> None:
        """Restart every child that exited; raises SupervisorGaveUp on a crash loop."""
        for child in self.children:
            process = child.process
            if process is None or process.poll() is None:
                continue
            if stopping():
                return
            self._restart(child, stopping)

    def _restart(self, child: Child, stopping: Callable[[], bool]) -> None:
        while True:
            process = child.process
            assert process is not None
            code = process.returncode
            uptime = time.monotonic() - child.started_at
            reason = exit_reason(code)
            child.last_exit = reason
            child.fast_failures = child.fast_failures + 1 if uptime < self.fast_window else 1
            self.on_event(ChildEvent("exited", child.name, reason, code, uptime, child.restarts))
            child.halt(process)  # reap it and tidy what it left (pid files, sockets)
            if child.fast_failures > self.max_fast_failures:
                event = ChildEvent("gave_up", child.name, reason, code, uptime, child.restarts)
                self.on_event(event)
                raise SupervisorGaveUp(
                    f"{child.name} failed {child.fast_failures} times in a row right after "
                    f"starting (last: {reason}); the archive was stopped. Read its log, fix "
                    "the cause, then run `archive serve` again."
                )
            pause = self.backoff[min(child.fast_failures - 1, len(self.backoff) - 1)]
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline:
                if stopping():
                    return
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
            if stopping():
                return
            child.restarts += 1
            child.started_at = time.monotonic()
            try:
                child.process = child.launch()
            except ArchiveError as exc:
                child.process = _Failed(str(exc))
            if child.process.poll() is None:
                self.on_event(
                    ChildEvent("restarted", child.name, reason, code, uptime, child.restarts)
                )
                return
            # It died again during its start: count it and go round.

    def stop_all(self) -> None:
        """Stop the front doors first (no new requests), then the others in reverse order
        of start."""
        ordered = [c for c in self.children if c.front]
        ordered += [c for c in reversed(self.children) if not c.front]
        for child in ordered:
            if child.process is not None:
                child.halt(child.process)

    def describe(self) -> dict:
        """For the state file and `archive status`: pid, restarts, last exit per child."""
        return {
            child.name: {
                "pid": child.pid,
                "restarts": child.restarts,
                "last_exit": child.last_exit,
            }
            for child in self.children
        }


class _Failed:
    """Stands in for a process that could not even be started (launch raised)."""

    pid = None

    def __init__(self, message: str) -> None:
        self.returncode = 1
        self.message = message

    def poll(self) -> int:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:  # noqa: ARG002 - Popen's API
        return self.returncode


# -- what really listens ---------------------------------------------------------------


def _proc_address(hex_address: str) -> str:
    """/proc/net/tcp{,6}'s "0100007F:1F90" as "127.0.0.1:8080" ("[::1]:8080")."""
    address, port = hex_address.split(":")
    raw = bytes.fromhex(address)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four little-endian 32-bit words
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        host = f"[{socket.inet_ntop(socket.AF_INET6, words)}]"
    return f"{host}:{int(port, 16)}"


def listening_sockets(pid: int) -> list[str]:
    """The TCP addresses process `pid` listens on, from /proc (what the kernel says, not
    what a configuration file hoped): ["127.0.0.1:8042", "0.0.0.0:4242"]. Empty when the
    process is gone or its /proc entries cannot be read."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    found = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                found.append(_proc_address(fields[1]))
    return sorted(set(found))


# -- binding Orthanc's sockets to the configured addresses ------------------------------

BIND_SHIM_SOURCE = OPS_DIR / "bind-shim.c"
WILDCARDS = ("0.0.0.0", "::")  # noqa: S104 - addresses compared with, never bound here


def build_bind_shim(config: ArchiveConfig) -> Path | None:
    """Compile ops/bind-shim.c into HOME/run (0700) for Orthanc's LD_PRELOAD; None when
    no C compiler is installed (`make setup` installs one) or it fails."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not BIND_SHIM_SOURCE.is_file():
        return None
    target = config.home.run_dir / "bind-shim.so"
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    result = subprocess.run(  # noqa: S603 - fixed compiler, our own source
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(target), str(BIND_SHIM_SOURCE), "-ldl"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    return target if result.returncode == 0 and target.is_file() else None


def orthanc_bind_environment(
    config: ArchiveConfig, internal_port: int, shim: Path | None
) -> tuple[dict[str, str], list[str]]:
    """Orthanc's LD_PRELOAD/ARCHIVE_BIND_MAP so that its HTTP socket is 127.0.0.1 only
    and its DICOM socket is dicom.host only, and warnings to print. Raises ServeError
    when dicom.host asks for one address and that cannot be enforced (fail closed)."""
    pins = {internal_port: "127.0.0.1"}
    dicom_host = "127.0.0.1" if config.dicom.host == "localhost" else config.dicom.host
    if dicom_host not in WILDCARDS:
        if ":" in dicom_host:
            raise ServeError(
                f"dicom.host {dicom_host} is an IPv6 address; Orthanc 1.10.1's DICOM server "
                "listens on IPv4 only. Use an IPv4 address or 0.0.0.0 in archive.toml."
            )
        pins[config.dicom.port] = dicom_host
    if shim is None:
        if config.dicom.port in pins:
            raise ServeError(
                f"dicom.host is {dicom_host}, but Orthanc can only be held to it with the "
                "archive's bind shim, which needs a C compiler: run `make setup` (it "
                'installs gcc), or set dicom.host = "0.0.0.0".'
            )
        return {}, [
            "Orthanc's internal HTTP port listens on every address (no C compiler to "
            "build the bind shim; run `make setup`); it still refuses every peer but "
            "127.0.0.1."
        ]
    mapping = ",".join(f"{port}={host}" for port, host in sorted(pins.items()))
    preload = " ".join(p for p in (str(shim), os.environ.get("LD_PRELOAD", "")) if p)
    return {"LD_PRELOAD": preload, "ARCHIVE_BIND_MAP": mapping}, []


# -- the DICOM front (archive/dicom/front.py): the archive's only DICOM entry -------------
@dataclass
class DicomFront:
    """The front's child process and what restarting it needs (kept in serve's memory)."""

    config: ArchiveConfig
    orthanc_url: str
    secret: str
    passphrase: str
    process: subprocess.Popen | None = None
    restarts: int = 0

    @property
    def log(self) -> Path:
        return self.config.home.run_dir / "dicom-front.log"


def start_dicom_front(front: DicomFront, timeout: float = 30.0) -> subprocess.Popen:
    """Start (or restart) the front and wait until its DICOM port accepts connections;
    returns its process (so that it can be a supervised child: this launches it,
    stop_dicom_process halts it).

    It gets the keyring passphrase through an inherited pipe (as Orthanc does) and the
    per-serve secret that Orthanc's HTTP filter accepts from it on 127.0.0.1 through its
    environment (read once and removed by the front). It binds dicom.host when the
    configuration has one, else every address (as Orthanc's DICOM server did)."""
    import sys

    from archive.dicom.forward import FRONT_SECRET_ENV

    config = front.config
    bind = getattr(config.dicom, "host", "") or "0.0.0.0"
    probe = "127.0.0.1" if bind in ("0.0.0.0", "::", "localhost") else bind
    env = orthanc_environment(config)
    read_fd = passphrase_pipe(front.passphrase)
    env[PASSPHRASE_FD_ENV] = str(read_fd)
    env[FRONT_SECRET_ENV] = front.secret
    command = [sys.executable, "-m", "archive.dicom.front", "--home", str(config.home.root)]
    command += ["--orthanc-url", front.orthanc_url, "--bind", bind]
    log = open(front.log, "ab")  # noqa: SIM115 - handed to the child
    try:
        front.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(config.home.run_dir),
            pass_fds=(read_fd,),
        )
    finally:
        os.close(read_fd)
        log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if front.process.poll() is not None:
            raise ServeError(
                f"the DICOM front did not start; the end of {front.log} says:\n"
                f"{log_tail(front.log)}"
            )
        try:
            with socket.create_connection((probe, config.dicom.port), timeout=0.5):
                return front.process
        except OSError:
            time.sleep(0.1)
    stop_dicom_process(front.process)
    raise ServeError(f"the DICOM front did not listen on port {config.dicom.port} in time.")


def stop_dicom_process(process: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGTERM (the front flushes its audit queue), SIGKILL if it hangs."""
    return stop_orthanc(process, timeout=timeout)


def stop_dicom_front(front: DicomFront | None) -> None:
    if front is not None and front.process is not None:
        stop_dicom_process(front.process)

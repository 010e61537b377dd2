"""Start and stop real archives (Orthanc + the plugin) for integration tests.

Every archive runs through the real CLI (`archive serve`) in its own process group, in a
temporary home, on free ports. Teardown always stops the whole group, so a failing test
never leaves an Orthanc behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from archive import db
from archive.access import AccessStore
from archive.config import ArchiveConfig, load_config
from archive.serve.home import init_home
from archive.vault import Keyring
from archive.vault.keyring import keyring_path
from archive.vault.ledger import InstanceLedger
from archive.vault.sealing import KdfParams

REPO = Path(__file__).resolve().parent.parent
DICOM_CONTENT = 1  # Orthanc's content type of the DICOM file itself
ARCHIVE_BIN = str(Path(sys.executable).with_name("archive"))


# The benchmark entry (benchmarks/plugin_entry.py), reached through the Orthanc wrapper:
# the production plugin has no switch that opens the REST API or stores in clear.
BENCH_ORTHANC = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_orthanc.py"


def bench_env(*, open_rest: bool = False, clear_storage: bool = False) -> dict[str, str]:
    """Environment additions that start an archive on the benchmark entry, with an open
    REST API (every request allowed; routes still get the caller) and/or clear storage."""
    env = {"ARCHIVE_ORTHANC": str(BENCH_ORTHANC)}
    if open_rest:
        env["ARCHIVE_UNSAFE_DISABLE_HTTP_FILTER"] = "1"
    if clear_storage:
        env["ARCHIVE_BENCH_PASSTHROUGH_STORAGE"] = "1"
    return env


OPEN_REST = bench_env(open_rest=True)


def _port_range() -> range:
    """This test process's own slice of ports, below Linux's ephemeral range.

    `make test` runs the suite in parallel workers (pytest-xdist). A port chosen by
    bind(0) is free only until the server binds it seconds later, and another worker's
    bind(0) could pick it meanwhile; giving each worker its own slice (10000-32000
    split by worker number) removes that race between workers. Ports the archive picks
    for itself (bind(0), ephemeral range 32768+) never fall in a slice.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker) if worker.isdigit() else 0
    span = 22000 // max(count, 1)
    start = 10000 + index * span
    return range(start, start + span)


_used_ports: set[int] = set()


def free_port() -> int:
    """A loopback TCP port that is free now, from this worker's slice (never reused)."""
    import random

    ports = _port_range()
    for _ in range(2000):
        port = random.randrange(ports.start, ports.stop)  # noqa: S311 (not a secret)
        if port in _used_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    env.update(extra)
    return env


def run_cli(
    *args: str,
    home: Path | None = None,
    input_text: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """Run `archive ...` as a user would, capturing its output."""
    command = [ARCHIVE_BIN, *args]
    if home is not None:
        command += ["--home", str(home)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        input=input_text,
        env=env or base_env(),
        timeout=timeout,
        check=False,
    )


@dataclass
class RunningArchive:
    """One archive home with its `archive serve` process."""

    home: Path
    config: ArchiveConfig
    process: subprocess.Popen | None = None
    serve_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=base_env)
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        scheme = "https" if self.config.http.tls else "http"
        return f"{scheme}://127.0.0.1:{self.config.http.port}"

    @property
    def dicom_port(self) -> int:
        return self.config.dicom.port

    @property
    def aet(self) -> str:
        return self.config.dicom.aet

    @property
    def log(self) -> Path:
        return self.config.home.orthanc_log

    def health(self) -> dict | None:
        try:
            context = None
            if self.config.http.tls:  # trust exactly the home's (self-signed) certificate
                context = ssl.create_default_context(
                    cafile=str(self.config.home.keys_dir / "https.pem")
                )
            with urllib.request.urlopen(
                self.url + "/teaching/health", timeout=2, context=context
            ) as answer:
                return json.loads(answer.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def start(self, timeout: float = 90) -> RunningArchive:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.config = load_config(self.home)
        self.process = subprocess.Popen(
            [ARCHIVE_BIN, "serve", "--home", str(self.home), *self.serve_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read() if self.process.stdout else ""
                raise RuntimeError(f"archive serve exited {self.process.returncode}: {output}")
            answer = self.health()
            if answer and answer.get("status") == "ok":  # anonymous: up or down only
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"archive did not become ready; log:\n{self.log_tail()}")

    def stop(self, timeout: float = 40) -> int | None:
        """SIGTERM the serve process group; SIGKILL whatever is left."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        if process.stdout:
            process.stdout.close()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL Orthanc and serve at once: a power cut, for crash tests."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
            self.process = None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stored_dicom(self) -> list[bytes]:
        """Every DICOM file Orthanc stored, read from the encrypted storage area on disk.

        Tests read what was stored this way rather than through Orthanc's REST API, whose
        file routes the access policy never opens.
        """
        from archive.vault.store import EncryptedStore

        passphrase = Path(self.env["ARCHIVE_KEYRING_PASSPHRASE_FILE"]).read_text()
        keyring = Keyring.open(keyring_path(self.config.home.keys_dir), passphrase)
        store = EncryptedStore(self.config.home.storage_dir, keyring)
        return [store.read(uuid, ct) for uuid, ct, _ in store.entries() if ct == DICOM_CONTENT]

    def counts(self) -> dict[str, int]:
        """Studies/series/instances stored, from the vault's instance ledger in the home's
        database (anonymous health says only up or down)."""
        assert self.health() is not None, "the archive is not answering /teaching/health"
        conn = db.open_database(self.config)
        try:
            return InstanceLedger(conn).counts()
        finally:
            conn.close()

    def cli(
        self, *args: str, input_text: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        return run_cli(*args, home=self.home, input_text=input_text, env=self.env, timeout=timeout)


PASSPHRASE = "correct horse battery staple, for tests only"
FAST_KDF = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)


def new_archive(root: Path, serve_args: list[str] | None = None, **init_kwargs) -> RunningArchive:
    """Create a fresh home on free ports with a keyring (not started).

    The keyring passphrase sits in a 0600 file beside the home, named to the archive by
    ARCHIVE_KEYRING_PASSPHRASE_FILE as an operator's systemd credential would be.
    """
    config = init_home(root, http_port=free_port(), dicom_port=free_port(), **init_kwargs)
    secret = root.parent / f"{root.name}.passphrase"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)
    Keyring.create(keyring_path(config.home.keys_dir), PASSPHRASE, kdf=FAST_KDF)
    args = ["--allow-unencrypted-volume", "--stable-age", "2"] if serve_args is None else serve_args
    env = base_env(ARCHIVE_KEYRING_PASSPHRASE_FILE=str(secret))
    return RunningArchive(home=config.home.root, config=config, serve_args=args, env=env)


def add_user(
    archive: RunningArchive,
    name: str,
    roles: tuple[str, ...] | list[str],
    *,
    trained: bool = True,
    password: str | None = None,
) -> str:
    """Create a named user locally on the home (as the bootstrapping operator would);
    returns the password. Trained users get familiarisation and suite-use training today."""
    password = password or f"pw-{name}-long-enough-42"
    now = datetime.now(UTC)
    conn = db.open_database(archive.config)  # SQLite or PostgreSQL, as [database] says
    try:
        store = AccessStore(conn)
        store.add_user(name, password, list(roles), now, by="test-harness")
        if trained:
            store.record_training(name, now.date(), now, by="test-harness")
    finally:
        conn.close()
    archive.passwords[name] = password
    return password


def client(archive: RunningArchive, user: str | None = None, **kwargs) -> httpx.Client:
    """An HTTP client for the archive, logged in as `user` (HTTP Basic) or anonymous."""
    auth = (user, archive.passwords[user]) if user else None
    return httpx.Client(base_url=archive.url, auth=auth, timeout=60, verify=False, **kwargs)


def register_node(
    archive: RunningArchive,
    name: str,
    aet: str,
    port: int = 104,
    *,
    store: bool = False,
    query: bool = False,
    host: str = "127.0.0.1",
) -> None:
    """Register a DICOM source or workstation directly in the home's database."""
    conn = db.open_database(archive.config)
    try:
        AccessStore(conn).add_dicom_node(name, aet, host, port, may_store=store, may_query=query)
    finally:
        conn.close()

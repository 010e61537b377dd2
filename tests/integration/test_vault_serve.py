"""`archive serve` and the keyring: a clear refusal that touches nothing on bad input, the
passphrase typed at a prompt and handed to Orthanc through a pipe only, and the plain
data directory refused unless allowed (and then shown in status and the audit log)."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import signal
import subprocess
import time
from pathlib import Path

import pytest

from archive.audit.query import iter_records
from tests.harness import ARCHIVE_BIN, PASSPHRASE, RunningArchive, new_archive, run_cli

PASSPHRASE_ENV = "ARCHIVE_KEYRING_PASSPHRASE_FILE"


def _snapshot(archive: RunningArchive) -> dict[str, str]:
    """Content hash of every file under the data directory and the keys directory."""
    home = archive.config.home
    state = {}
    for root in (home.data_dir, home.keys_dir):
        for path in sorted(root.rglob("*")):
            if path.is_file():
                state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                state[str(path)] = "dir"
    return state


def _refused(archive: RunningArchive, env: dict[str, str] | None = None) -> str:
    before = _snapshot(archive)
    result = run_cli(
        "serve",
        "--allow-unencrypted-volume",
        home=archive.home,
        env=env or archive.env,
        input_text="",
        timeout=60,
    )
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert len(output.splitlines()) == 1, output  # one clear line
    assert "Traceback" not in output
    assert PASSPHRASE not in output
    assert not archive.log.exists(), "Orthanc was started"
    assert _snapshot(archive) == before, "data was touched"
    return output


@pytest.fixture
def home(tmp_path: Path) -> RunningArchive:
    return new_archive(tmp_path / "home")


def test_wrong_passphrase_refused(home: RunningArchive, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.passphrase"
    wrong.write_text("not the passphrase of this keyring, long enough")
    wrong.chmod(0o600)
    line = _refused(home, {**home.env, PASSPHRASE_ENV: str(wrong)})
    assert "passphrase is wrong" in line.lower() or "wrong passphrase" in line.lower(), line


def test_missing_keyring_refused(home: RunningArchive) -> None:
    (home.config.home.keys_dir / "keyring.json").unlink()
    line = _refused(home)
    assert "No keyring" in line and "archive keys restore" in line, line


def test_corrupt_keyring_refused(home: RunningArchive) -> None:
    path = home.config.home.keys_dir / "keyring.json"
    raw = json.loads(path.read_text())
    raw["ciphertext"] = raw["ciphertext"][:-8] + "AAAAAAA="
    path.write_text(json.dumps(raw))
    line = _refused(home)
    assert "restore" in line.lower(), line
    path.write_text(path.read_text()[:100])  # not even JSON
    assert "restore" in _refused(home).lower()


def test_no_passphrase_source_without_terminal_refused(home: RunningArchive) -> None:
    env = {k: v for k, v in home.env.items() if k != PASSPHRASE_ENV}
    line = _refused(home, env)
    assert "passphrase" in line and "passphrase_file" in line, line


def test_plain_data_directory_refused_unless_allowed(home: RunningArchive) -> None:
    home.serve_args = ["--stable-age", "2"]
    result = home.cli("serve", timeout=60)
    assert result.returncode != 0
    assert "not on an encrypted volume" in result.stderr + result.stdout
    assert not home.log.exists()
    home.serve_args = ["--allow-unencrypted-volume", "--stable-age", "2"]
    home.start()
    try:
        status = json.loads(home.cli("status", "--json").stdout)
        assert status["volume_encrypted"] is False
        assert status["running_unencrypted"] is True
        assert status["allowed_unencrypted_by_flag"] is True
        human = home.cli("status").stdout
        assert "NOT encrypted" in human and "unencrypted data directory" in human
    finally:
        home.stop()
    deadline = time.monotonic() + 15
    while True:
        records = iter_records(home.config.home.audit_dir)
        starts = [r for r in records if r["action"] == "system.start"]
        if starts or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert starts[-1]["detail"]["unencrypted_volume"] is True


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def test_passphrase_prompted_on_terminal_and_piped_to_orthanc(
    home: RunningArchive, tmp_path: Path
) -> None:
    env = {k: v for k, v in home.env.items() if k != PASSPHRASE_ENV}
    master, slave = pty.openpty()
    out = open(tmp_path / "serve.out", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [ARCHIVE_BIN, "serve", "--home", str(home.home), *home.serve_args],
        stdin=slave,
        stdout=out,
        stderr=out,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    try:
        # Without a controlling terminal getpass prompts on stderr and reads the terminal
        # on stdin; it flushes pending input when it turns echo off, so wait for the prompt.
        transcript = tmp_path / "serve.out"
        deadline = time.monotonic() + 30
        while b"Keyring passphrase" not in transcript.read_bytes():
            assert time.monotonic() < deadline and process.poll() is None, transcript.read_text()
            time.sleep(0.05)
        time.sleep(0.2)
        os.write(master, (PASSPHRASE + "\n").encode())
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (home.health() or {}).get("status"):
            assert process.poll() is None, (tmp_path / "serve.out").read_text()
            time.sleep(0.2)
        assert home.health() == {"status": "ok"}
        orthanc = _children(process.pid)
        assert orthanc, "no Orthanc child"
        secret = PASSPHRASE.encode()
        for pid in [process.pid, *orthanc]:
            assert secret not in Path(f"/proc/{pid}/cmdline").read_bytes()
            assert secret not in Path(f"/proc/{pid}/environ").read_bytes()
        environ = Path(f"/proc/{orthanc[0]}/environ").read_bytes().split(b"\0")
        assert any(e.startswith(b"ARCHIVE_KEYRING_PASSPHRASE_FD=") for e in environ)
        assert not any(e.startswith(PASSPHRASE_ENV.encode()) for e in environ)
        for path in home.home.rglob("*"):  # never written to a file either
            if path.is_file():
                assert secret not in path.read_bytes(), path
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=40)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.close(master)
        out.close()


def test_ctrl_c_at_the_passphrase_prompt_stops_serve_and_starts_nothing(
    home: RunningArchive, tmp_path: Path
) -> None:
    env = {k: v for k, v in home.env.items() if k != PASSPHRASE_ENV}
    before = _snapshot(home)
    master, slave = pty.openpty()
    transcript = tmp_path / "serve.out"
    with open(transcript, "wb") as out:
        process = subprocess.Popen(
            [ARCHIVE_BIN, "serve", "--home", str(home.home), *home.serve_args],
            stdin=slave, stdout=out, stderr=out, env=env, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        try:
            deadline = time.monotonic() + 30
            while b"Keyring passphrase" not in transcript.read_bytes():
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)  # the operator's Ctrl-C
            assert process.wait(timeout=20) != 0  # stops now: does not wait for Enter
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            os.close(master)
    said = transcript.read_text()
    assert "stopped before the archive started" in said and "Traceback" not in said, said
    assert not home.log.exists(), "Orthanc was started"
    assert _snapshot(home) == before

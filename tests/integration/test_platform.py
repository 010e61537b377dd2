"""The platform through real processes: init, serve, status, refusals, plugin loading."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from archive.config import load_config
from archive.serve import orthanc_config
from tests.harness import OPEN_REST, RunningArchive, base_env, free_port, run_cli


def test_init_creates_private_secure_home(tmp_path: Path) -> None:
    home = tmp_path / "h"
    result = run_cli("init", "--http-port", str(free_port()), home=home)
    assert result.returncode == 0, result.stderr
    for directory in ["keys", "data", "data/index", "data/storage", "data/tmp", "run"]:
        assert (home / directory).stat().st_mode & 0o777 == 0o700, directory
    rendered = json.loads((home / "orthanc" / "orthanc.json").read_text())
    assert rendered["RemoteAccessAllowed"] is False
    assert rendered["DicomAlwaysAllowStore"] is False
    assert rendered["DicomCheckModalityHost"] is True
    assert rendered["WebDavEnabled"] is False
    assert rendered["ExecuteLuaEnabled"] is False
    assert rendered["LuaScripts"] == []
    assert rendered["RestApiWriteToFileSystemEnabled"] is False
    assert rendered["TemporaryDirectory"].startswith(str(home / "data"))
    assert (home / "archive.toml").stat().st_mode & 0o077 == 0


def test_init_refuses_existing_home_and_leaves_nothing_half_made(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert run_cli("init", home=home).returncode == 0
    again = run_cli("init", home=home)
    assert again.returncode != 0
    assert "already an archive home" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    bad = run_cli("init", "--aet", "WAY-TOO-LONG-AE-TITLE-X", home=tmp_path / "other")
    assert bad.returncode != 0
    assert "dicom.aet" in bad.stderr
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "setup, expected",
    [
        ("missing", "No archive home"),
        ("not-a-home", "not an archive home"),
        ("corrupt", "not valid TOML"),
        ("bad-port", "http.port"),
    ],
)
def test_bad_home_gets_one_clear_line(tmp_path: Path, setup: str, expected: str) -> None:
    home = tmp_path / "h"
    if setup != "missing":
        home.mkdir()
    if setup in ("corrupt", "bad-port"):
        assert run_cli("init", home=tmp_path / "good").returncode == 0
        home = tmp_path / "good"
        text = (home / "archive.toml").read_text()
        if setup == "corrupt":
            text = text.replace("[http]", "[http")
        else:
            text = text.replace("port = 8042", "port = 99999")
        (home / "archive.toml").write_text(text)
    for command in (["status"], ["serve", "--allow-unencrypted-volume"]):
        result = run_cli(*command, home=home, timeout=30)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr
        assert "Traceback" not in result.stdout + result.stderr


def test_serve_status_and_second_serve_refused(running_archive: RunningArchive) -> None:
    status = running_archive.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["serving"] and report["plugin_loaded"]
    assert report["orthanc_version"] == "1.10.1"
    assert report["counts"]["instances"] == 0
    second = running_archive.cli("serve", "--allow-unencrypted-volume", timeout=30)
    assert second.returncode != 0
    assert "already running on this home" in second.stderr


def test_serve_refuses_a_port_in_use(archive_home: RunningArchive) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", archive_home.config.http.port))
        blocker.listen()
        result = archive_home.cli("serve", "--allow-unencrypted-volume", timeout=30)
    assert result.returncode != 0
    assert f"port {archive_home.config.http.port} is already in use" in result.stderr


def test_serve_refuses_plain_volume_without_explicit_consent(archive_home: RunningArchive) -> None:
    result = archive_home.cli("serve", timeout=30)
    assert result.returncode != 0
    assert "not on an encrypted volume" in result.stderr


def test_serve_says_when_orthanc_is_missing(archive_home: RunningArchive) -> None:
    env = base_env(ARCHIVE_ORTHANC="/nonexistent/Orthanc")
    result = run_cli("serve", "--allow-unencrypted-volume", home=archive_home.home, env=env)
    assert result.returncode != 0
    assert "Orthanc is not installed" in result.stderr and "make setup" in result.stderr


def test_plugin_refuses_to_serve_on_corrupt_configuration(archive_home: RunningArchive) -> None:
    """Orthanc started directly on a home whose archive.toml is broken must not serve."""
    config = archive_home.config
    orthanc_config.write(config, orthanc_config.render(config))
    config.home.config_file.write_text("[archive\n")
    process = subprocess.run(
        ["Orthanc", str(config.home.orthanc_config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=base_env(),
        check=False,
    )
    assert process.returncode != 0
    assert "teaching-archive: refusing to start" in process.stderr
    assert "not valid TOML" in process.stderr


def test_sigterm_stops_cleanly_and_leaves_no_process(archive_home: RunningArchive) -> None:
    archive_home.start()
    pid = archive_home.process.pid
    code = archive_home.stop()
    assert code == 0
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert load_config(archive_home.home)  # home still valid after a stop


def test_filter_switch_refused_on_a_networked_archive(archive_home: RunningArchive) -> None:
    """The benchmark entry's open REST API never runs beyond loopback."""
    text = archive_home.config.home.config_file.read_text()
    archive_home.config.home.config_file.write_text(
        text.replace('host = "127.0.0.1"', 'host = "0.0.0.0"')
    )
    env = dict(archive_home.env, **OPEN_REST)
    result = run_cli("serve", "--allow-unencrypted-volume", home=archive_home.home, env=env)
    assert result.returncode != 0
    assert "only accepted on a loopback-only archive" in result.stderr

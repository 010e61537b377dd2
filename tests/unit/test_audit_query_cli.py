"""Audit queries, CSV/JSON export and the `archive audit` commands."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archive.audit import AuditError, AuditEvent, audit_log_for, query, to_csv, to_json
from archive.audit.log import LOG_NAME
from archive.cli.main import app
from archive.paths import HomePaths


@pytest.fixture
def home(tmp_path: Path) -> HomePaths:
    (tmp_path / "archive.toml").write_text("")
    paths = HomePaths(tmp_path)
    log = audit_log_for(paths)  # as every command writes it: anchored in archive.db
    log.append(AuditEvent("auth.login", "success", "alice", ("trainer",), "10.0.0.1"))
    log.append(AuditEvent("auth.login", "denied", "bob", (), "10.0.0.2", detail={"r": "pw"}))
    log.append(AuditEvent("case.edit", "success", "alice", ("trainer",), "cli", "NSR-000001"))
    log.append(AuditEvent("pull", "success", "carol", ("registrar",), "WS1@10.0.0.9", "NSR-000002"))
    return paths


def _rewrite_time(paths: HomePaths, seq: int, stamp: str) -> None:
    """Give record `seq` another timestamp (breaks the chain; queries don't verify)."""
    log = paths.audit_dir / LOG_NAME
    lines = log.read_text().splitlines()
    record = json.loads(lines[seq - 1])
    record["timestamp"] = stamp
    lines[seq - 1] = json.dumps(record)
    log.write_text("\n".join(lines) + "\n")


def test_query_filters(home: HomePaths) -> None:
    d = home.audit_dir
    assert [r["seq"] for r in query(d, user="alice")] == [1, 3]
    assert [r["seq"] for r in query(d, case="NSR-000002")] == [4]
    assert [r["seq"] for r in query(d, action="auth")] == [1, 2]
    assert [r["seq"] for r in query(d, action="auth.*")] == [1, 2]
    assert [r["seq"] for r in query(d, action="auth.log")] == []
    assert [r["seq"] for r in query(d, action="auth.login", outcome="denied")] == [2]
    _rewrite_time(home, 1, "2024-01-01T10:00:00.000000Z")
    _rewrite_time(home, 2, "2024-02-01T10:00:00.000000Z")
    assert [r["seq"] for r in query(d, until="2024-01-15")] == [1]
    assert [r["seq"] for r in query(d, since="2024-01-15", until="2025-01-01")] == [2]
    assert [r["seq"] for r in query(d, since="2024-02-01T10:00:00Z", user="bob")] == [2]
    with pytest.raises(AuditError, match="ISO 8601"):
        query(d, since="yesterday")


def test_exports(home: HomePaths) -> None:
    rows = query(home.audit_dir)
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [p["actor"] for p in parsed] == ["alice", "bob", "alice", "carol"]
    assert parsed[1]["outcome"] == "denied" and json.loads(parsed[1]["detail"]) == {"r": "pw"}
    assert parsed[0]["roles"] == "trainer" and parsed[0]["target"] == ""
    assert json.loads(to_json(rows))[3]["target"] == "NSR-000002"


def test_cli_show_and_verify(home: HomePaths) -> None:
    runner = CliRunner()
    root = str(home.root)
    out = runner.invoke(app, ["audit", "show", "--home", root, "--user", "alice", "--json"])
    assert out.exit_code == 0, out.output
    assert [r["seq"] for r in json.loads(out.output)] == [1, 3]
    out = runner.invoke(app, ["audit", "show", "--home", root, "--action", "pull", "--csv"])
    assert out.exit_code == 0 and out.output.splitlines()[1].startswith("4,")
    out = runner.invoke(app, ["audit", "show", "--home", root])
    assert out.exit_code == 0 and len(out.output.splitlines()) == 4
    out = runner.invoke(app, ["audit", "verify", "--home", root, "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["ok"] is True
    _rewrite_time(home, 2, "2024-02-01T10:00:00.000000Z")
    out = runner.invoke(app, ["audit", "verify", "--home", root])
    assert out.exit_code == 1
    assert "line 2 (seq 2): record edited" in out.output


class _FakeKeyring:
    """Stands in for archive.vault's Keyring: only the two audit attributes are used."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.audit_signing_key = Ed25519PrivateKey.generate()
        self.audit_public_key_bytes = self.audit_signing_key.public_key().public_bytes_raw()


def test_cli_checkpoint_and_keyring_verify(home: HomePaths, monkeypatch) -> None:
    import archive.vault as vault

    ring = _FakeKeyring()
    monkeypatch.setattr(vault, "open_keyring_for_cli", lambda config: ring)
    runner = CliRunner()
    root = str(home.root)
    out = runner.invoke(app, ["audit", "checkpoint", "--home", root, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"checkpoint_seq": 5}
    out = runner.invoke(app, ["audit", "verify", "--home", root, "--keyring", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["checkpoints"] == 1
    # Another keyring is refused: its key is not the one pinned in HOME/keys.
    monkeypatch.setattr(vault, "open_keyring_for_cli", lambda config: _FakeKeyring())
    out = runner.invoke(app, ["audit", "verify", "--home", root, "--keyring"])
    assert out.exit_code == 1 and "is not the key pinned" in out.output
    # Another key given as the off-site copy does not verify the checkpoint.
    other = home.root / "other.hex"
    other.write_text(_FakeKeyring().audit_public_key_bytes.hex())
    out = runner.invoke(app, ["audit", "verify", "--home", root, "--public-key", str(other)])
    assert out.exit_code == 1 and "line 5 (seq 5)" in out.output

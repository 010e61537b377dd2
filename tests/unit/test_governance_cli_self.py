"""People act for themselves on the governance CLI (issue 21): options that named
another person are refused with one line, and each act needs the person's own password."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archive import db
from archive.access import AccessStore
from archive.audit import query as audit_query
from archive.cli.main import app
from archive.serve.home import init_home
from archive.vault import Keyring
from archive.vault.keyring import keyring_path
from archive.vault.sealing import KdfParams

NOW = datetime.now(UTC)
FAST = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    config = init_home(tmp_path / "home", http_port=18044, dicom_port=14244)
    secret = tmp_path / "pass"
    secret.write_text("pass phrase for tests")
    secret.chmod(0o600)
    Keyring.create(keyring_path(config.home.keys_dir), "pass phrase for tests", kdf=FAST)
    monkeypatch.setenv("ARCHIVE_KEYRING_PASSPHRASE_FILE", str(secret))
    monkeypatch.setenv("ARCHIVE_OPERATOR", "operator1")
    conn = db.connect(config.home.db_path)
    store = AccessStore(conn)
    for name, role in (("b1", "board_member"), ("p1", "personnel"), ("p2", "personnel")):
        store.add_user(name, f"pw-{name}-long-enough-42", [role], NOW, by="test")
    conn.close()
    for name in ("b1", "p1", "p2"):
        (tmp_path / f"{name}.pw").write_text(f"pw-{name}-long-enough-42\n")
    return config.home.root


def _run(home: Path, *args: str):
    return CliRunner().invoke(app, [*args, "--home", str(home)])


def _pw(home: Path, name: str) -> str:
    return str(home.parent / f"{name}.pw")


def test_typed_names_are_refused_with_what_to_use(home: Path):
    by = _run(home, "shares", "confirm", "1", "--by", "Someone", "--recipient-officer", "Dr X",
              "--on", "2025-01-01", "--evidence", "letter")  # fmt: skip
    assert by.exit_code == 1 and "--by is no longer accepted" in by.output
    attested = _run(home, "close", "attest-workstation", "imac-1", "--method", "nwipe",
                    "--attested-by", "Ian Tech")  # fmt: skip
    assert attested.exit_code == 1 and "--attested-by is no longer accepted" in attested.output


def test_each_closure_step_is_the_signed_in_persons(home: Path):
    # Another's password does not make you them.
    impostor = _run(home, "close", "confirm", "--as", "p2", "--password-file", _pw(home, "p1"))
    assert impostor.exit_code == 1 and "p2 could not be authenticated" in impostor.output
    # A Board member may not confirm a wipe; the refusal says why and what to do.
    board = _run(home, "close", "confirm", "--as", "b1", "--password-file", _pw(home, "b1"))
    assert board.exit_code == 1 and "closure.confirm_wipe" in board.output
    assert len(board.output.strip().splitlines()) == 1
    # No decision in force yet: refused as a step missing, by the person who tried.
    early = _run(home, "close", "confirm", "--as", "p1", "--password-file", _pw(home, "p1"))
    assert early.exit_code == 1 and "School Board" in early.output
    decided = _run(home, "close", "decide", "--outcome", "destroy", "--meeting-date",
                   NOW.date().isoformat(), "--minute", "SB/1", "--text", "Destroy.",
                   "--as", "b1", "--password-file", _pw(home, "b1"), "--json")  # fmt: skip
    assert decided.exit_code == 0, decided.output
    attested = _run(home, "close", "attest-workstation", "imac-1", "--method", "nwipe",
                    "--as", "p2", "--password-file", _pw(home, "p2"), "--json")  # fmt: skip
    assert attested.exit_code == 0, attested.output
    records = audit_query(home / "data" / "audit")
    acts = [(r["action"], r["actor"], r["outcome"]) for r in records
            if r["action"].startswith("closure.")]  # fmt: skip
    assert ("closure.decision", "b1", "success") in acts
    assert ("closure.workstation_wiped", "p2", "success") in acts
    assert ("closure.wipe_confirm", "b1", "denied") in acts
    assert all(actor != "operator1" for _, actor, _ in acts)

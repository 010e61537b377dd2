"""`archive deid SRC DEST`: released files named by new UID, quarantine and refusals listed."""

from __future__ import annotations

import json
import stat

import pytest
from typer.testing import CliRunner

from archive.cli import deid as deid_cli
from archive.cli.main import app
from tests import corpus


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    result = CliRunner().invoke(app, ["init", "--home", str(h)])
    assert result.exit_code == 0, result.output
    monkeypatch.setattr(deid_cli, "pseudonym_key", lambda config: b"\x11" * 32)
    return h


def test_deid_cli_json_summary(home, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i, ds in enumerate(corpus.make_ct_series(2, patient="CLIPATIENT^NAME")):
        (src / f"CLIPATIENT_{i}.dcm").write_bytes(corpus.to_bytes(ds))
    us = corpus.make_ct_series(1)[0]
    us.Modality = "US"
    (src / "us.dcm").write_bytes(corpus.to_bytes(us))
    (src / "junk.bin").write_bytes(b"x" * 400)
    dest = tmp_path / "out"
    result = CliRunner().invoke(app, ["deid", str(src), str(dest), "--home", str(home), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"released": 2, "quarantined": 1, "refused": 1}
    from archive.audit import query

    (record,) = query(home / "data" / "audit", action="deid.preview")
    assert record["detail"]["released"] == 2 and record["detail"]["refused"] == 1
    assert "CLIPATIENT" not in (home / "data" / "audit" / "audit.jsonl").read_text()
    assert "modality US" in summary["quarantined"][0]["reason"]
    outputs = sorted(p.name for p in dest.iterdir())
    assert outputs == sorted(r["output"] for r in summary["released"])
    assert all(name.startswith("2.25.") for name in outputs)
    for p in dest.iterdir():
        assert b"CLIPATIENT" not in p.read_bytes()
    text = CliRunner().invoke(app, ["deid", str(src), str(dest), "--home", str(home)])
    assert "2 released" in text.stdout and "quarantined  us.dcm" in text.stdout


def test_deid_cli_refuses_dest_inside_src(home, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    result = CliRunner().invoke(app, ["deid", str(src), str(src / "o"), "--home", str(home)])
    assert result.exit_code == 1 and "inside SRC" in result.output


def test_key_file_fallback_created_private(tmp_path):
    path = tmp_path / "keys" / deid_cli.KEY_FILE_NAME
    key = deid_cli._key_file(path)
    assert len(key) == 32 and deid_cli._key_file(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

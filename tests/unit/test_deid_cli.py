"""`archive deid SRC DEST`: released files named by new UID, quarantine and refusals listed."""

from __future__ import annotations

import json
import stat

import pytest
from typer.testing import CliRunner

from archive.cli import deid as deid_cli
from archive.cli.main import app
from archive.pixels.synthetic import ultrasound_with_text
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
    us.Modality = "US"  # a candidate whose pixels hold no text: released unmasked
    (src / "us.dcm").write_bytes(corpus.to_bytes(us))
    text, _ = ultrasound_with_text(texts=(("SMITH JOHN", (8, 6)),), size=16)
    text.PatientID, text.PatientName = "CLI0002", "CLIPATIENT^OTHER"
    (src / "us_text.dcm").write_bytes(corpus.to_bytes(text))
    (src / "junk.bin").write_bytes(b"x" * 400)
    dest = tmp_path / "out"
    result = CliRunner().invoke(app, ["deid", str(src), str(dest), "--home", str(home), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"released": 3, "masked": 0, "quarantined": 1, "refused": 1}
    from archive.audit import query

    (record,) = query(home / "data" / "audit", action="deid.preview")
    assert record["detail"]["released"] == 3 and record["detail"]["refused"] == 1
    assert "CLIPATIENT" not in (home / "data" / "audit" / "audit.jsonl").read_text()
    (held,) = summary["quarantined"]
    assert held["file"] == "us_text.dcm" and "OCR found text" in held["reason"]
    (us_out,) = [r for r in summary["released"] if r["file"] == "us.dcm"]
    assert us_out["pixels"][-1] == "OCR found no text on any frame"
    outputs = sorted(p.name for p in dest.iterdir())
    assert outputs == sorted(r["output"] for r in summary["released"])
    assert all(name.startswith("2.25.") for name in outputs)
    for p in dest.iterdir():
        assert b"CLIPATIENT" not in p.read_bytes()
    text = CliRunner().invoke(app, ["deid", str(src), str(dest), "--home", str(home)])
    assert "3 released" in text.stdout and "held         us_text.dcm" in text.stdout


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


def test_deid_cli_says_which_boxes_were_masked_and_defaces_a_face(home, tmp_path):
    import numpy as np
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    from archive.pixels.face import depth_map, synthetic_head
    from tests.unit.test_pixels_face import head_series

    src = tmp_path / "in"
    src.mkdir()
    us1 = get_testdata_file("US1_UNCR.dcm", download=False)
    if us1 is None:
        pytest.skip("pydicom-data not installed")
    (src / "us1.dcm").write_bytes(open(us1, "rb").read())
    head = synthetic_head()
    for i, ds in enumerate(head_series(head, 2.0)):
        ds.PatientID, ds.PatientName = "FACE0001", "CLIPATIENT^FACE"
        (src / f"head_{i:03d}.dcm").write_bytes(corpus.to_bytes(ds))
    dest = tmp_path / "out"
    args = ["deid", str(src), str(dest), "--home", str(home), "--json", "--deface"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    (us,) = summary["masked"]
    assert us["template"] == "ge-logiq700-us-480x640@v1"
    assert {"x": 0, "y": 0, "width": 640, "height": 108} in us["boxes"]
    (face,) = summary["faces"].values()
    assert face["covered"] and summary["defaced_series"]
    outs = [dcmread(dest / r["output"]) for r in summary["released"]]
    assert all(r.get("face") == "defaced" for r in summary["released"])
    outs.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    after = np.stack([d.pixel_array.astype(np.float32) - 1024 for d in outs])
    before_depth, after_depth = depth_map(head, -300, 1.6), depth_map(after, -300, 1.6)
    mid = head.shape[2] // 2
    assert (after_depth[30:46, mid] - before_depth[30:46, mid]).min() >= 10.0
    assert np.array_equal(before_depth[70:], after_depth[70:])

"""The output stays valid DICOM: dciodvfy reports no error the input did not have."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from archive.deid import DeidSecrets, deidentify, load_policy
from archive.paths import POLICIES_DIR
from tests import corpus

DCIODVFY = shutil.which("dciodvfy")
pytestmark = pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) not installed")
FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "test-SR.dcm",
    "liver.dcm",
    "waveform_ecg.dcm",
]


def _errors(path: Path) -> set[str]:
    proc = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    lines = (proc.stdout + proc.stderr).splitlines()
    out = set()
    for line in lines:
        if not line.startswith("Error"):
            continue
        line = re.sub(r"<[^>]*>", "<>", line)  # values differ by design
        line = re.sub(r"\d+(\.\d+){2,}", "UID", line)
        line = re.sub(r'"[^"]*"', '""', line)
        out.add(line)
    return out


def _new_errors(tmp_path: Path, name: str, data: bytes) -> set[str]:
    result = deidentify(data, load_policy(POLICIES_DIR), DeidSecrets(b"\x09" * 32))
    assert result.released is not None, result.quarantine_reason
    src, dst = tmp_path / f"in-{name}", tmp_path / f"out-{name}"
    src.write_bytes(data)
    dst.write_bytes(result.released)
    return _errors(dst) - _errors(src)


@pytest.mark.parametrize("name", FILES)
def test_no_new_dciodvfy_errors_on_pydicom_files(tmp_path, name):
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not bundled")
    assert _new_errors(tmp_path, name, Path(path).read_bytes()) == set()


def test_no_new_dciodvfy_errors_on_planted_corpus(tmp_path):
    ds, _ = corpus.make_planted_instance()
    assert _new_errors(tmp_path, "planted.dcm", corpus.to_bytes(ds)) == set()


def test_no_new_dciodvfy_errors_on_plain_ct(tmp_path):
    ds = corpus.make_ct_series(1)[0]
    assert _new_errors(tmp_path, "ct.dcm", corpus.to_bytes(ds)) == set()

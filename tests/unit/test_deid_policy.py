"""Policy loading fails closed, and the compiled tables say what the profile says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from archive.deid import load_policy
from archive.deid import policy as P
from archive.errors import ConfigError
from archive.paths import POLICIES_DIR


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "policies" / "deid"
    shutil.copytree(POLICIES_DIR / "deid", dest)
    return dest


def test_loads_and_compiles_profile():
    pol = load_policy(POLICIES_DIR)
    assert pol.version and pol.profile_edition == "2024b"
    assert pol.actions[0x00100010][0] == P.PSEUDO_NAME
    assert pol.actions[0x00080018][0] == P.UID
    assert pol.actions[0x00080016][0] == P.KEEP  # SOP Class UID is well-known
    assert pol.actions[0x00081030][0] == P.CLEAN  # Clean Descriptors on
    assert pol.actions[0x00080020][0] == P.CLEAN  # dates modified
    assert pol.actions[0x00100040][0] == P.KEEP  # sex kept (patient characteristics)
    assert pol.actions[0x00100030][0] == P.EMPTY  # birth date goes
    assert pol.actions[0x00081040][0] == P.REMOVE  # department: X
    assert ((0x0019, "GEMS_ACQU_01", 0x02),) in pol.private_keep
    assert "US" in pol.quarantine.modalities
    assert len(pol.sources["profile"]) == 64


def test_accepts_policies_dir_or_deid_dir(policy_copy):
    assert load_policy(policy_copy).version == load_policy(policy_copy.parent).version


def test_missing_policy_fails_closed(tmp_path):
    with pytest.raises(ConfigError, match="missing"):
        load_policy(tmp_path)


def test_tampered_profile_fails_closed(policy_copy):
    profile = policy_copy / "profile_e1_1_2024b.json"
    profile.write_text(profile.read_text().replace('"basicProfile":"X"', '"basicProfile":"K"', 1))
    with pytest.raises(ConfigError, match="sha256"):
        load_policy(policy_copy)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ('version = "2026.1"', 'version = ""', "version"),
        ("cleanDescOpt = true", "cleanDescOpt = true\nmadeUpOpt = true", "unknown options"),
        ('"00101010" = "AGE"', '"00101010" = "SHRUG"', "unknown action"),
        ("offset_days_max = -365", "offset_days_max = 10", "excludes 0"),
        ("[ages]", "[agez]", "lacks"),
        ("version =", "version ==", "not valid TOML"),
    ],
)
def test_bad_options_fail_closed(policy_copy, old, new, match):
    path = policy_copy / "options.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=match):
        load_policy(policy_copy)


def test_bad_quarantine_rules_fail_closed(policy_copy):
    path = policy_copy / "quarantine.toml"
    path.write_text(path.read_text().replace("BurnedInAnnotation", "BurntInAnnotationz"))
    with pytest.raises(ConfigError, match="keyword"):
        load_policy(policy_copy)


def test_private_kb_parser_handles_quirks():
    text = (
        "element_sig_pattern,tag_name,vr,private_disposition\n"
        '"(0019,HOLOGIC, Inc."",02)",x,LO, k\n'
        '"(0029,""SIEMENS CSA HEADER"",10)[<0>](0029,""SIEMENS CSA HEADER"",20)",x,OB,K\n'
        '"(0008,1084)[<0>](312f,""Ramsoft"",10)",x,DA,d\n'
    )
    keep = P.parse_private_kb(text)
    assert keep[((0x0019, "HOLOGIC, Inc.", 0x02),)] == "LO"
    path = ((0x0029, "SIEMENS CSA HEADER", 0x10), (0x0029, "SIEMENS CSA HEADER", 0x20))
    assert keep[path] == "OB"
    assert len(keep) == 2

"""The governance policy is data, validated at load, and fails closed."""

from __future__ import annotations

import shutil

import pytest

from archive.governance.errors import GovernancePolicyError
from archive.governance.policy import load_policy
from archive.paths import POLICIES_DIR


@pytest.fixture
def copy(tmp_path):
    shutil.copytree(POLICIES_DIR / "governance", tmp_path / "governance")
    shutil.copytree(POLICIES_DIR / "access", tmp_path / "access")
    return tmp_path


def _edit(root, name, old, new):
    path = root / "governance" / name
    text = path.read_text()
    assert old in text, f"{old!r} not in {name}"
    path.write_text(text.replace(old, new))


def test_repository_policy_loads_with_brief_values():
    p = load_policy()
    assert p.version == "1"
    assert p.quorum == 2
    assert p.holders("removal.approve") == {"head_of_school", "tpd"}  # actions.toml
    assert set(p.recipient_kinds) == {
        "uk_radiology_school",
        "rcr_vca",
        "rcr_riti",
        "trust_teaching_collection",
    }
    assert "commercial" in p.refused_recipient_kinds
    assert "commercial" in p.refused_removal_purposes
    assert p.publication_purposes == {
        "publication_journal",
        "publication_book_chapter",
        "publication_elearning",
    }
    assert p.levels_without_agreement == {"publication"}
    assert "educational use only" in " ".join(p.export_terms_template.split())
    assert len(p.sha256) == 64


def test_hash_changes_with_template(copy):
    before = load_policy(copy).sha256
    _edit(copy, "undertaking.md", "kept secure", "kept securely")
    assert load_policy(copy).sha256 != before


def test_missing_policy_refused(tmp_path):
    with pytest.raises(GovernancePolicyError, match="cannot read"):
        load_policy(tmp_path)


def test_invalid_toml_refused(copy):
    (copy / "governance" / "governance.toml").write_text("version = [")
    with pytest.raises(GovernancePolicyError, match="not valid TOML"):
        load_policy(copy)


def test_missing_version_refused(copy):
    _edit(copy, "governance.toml", "version = 1\n", "")
    with pytest.raises(GovernancePolicyError, match="version"):
        load_policy(copy)


def test_commercial_must_stay_refused(copy):
    _edit(
        copy,
        "governance.toml",
        'refused_recipient_kinds = ["commercial", ',
        "refused_recipient_kinds = [",
    )
    with pytest.raises(GovernancePolicyError, match="must include 'commercial'"):
        load_policy(copy)


def test_publication_cannot_allow_limited_access(copy):
    _edit(
        copy,
        "governance.toml",
        'publication_journal = ["publication"]',
        'publication_journal = ["limited-access", "publication"]',
    )
    with pytest.raises(GovernancePolicyError, match="publication needs cases"):
        load_policy(copy)


def test_limited_access_without_agreement_refused(copy):
    _edit(
        copy,
        "governance.toml",
        'levels_without_agreement = ["publication"]',
        'levels_without_agreement = ["limited-access", "publication"]',
    )
    with pytest.raises(GovernancePolicyError, match="contractual"):
        load_policy(copy)


def test_non_educational_purpose_refused(copy):
    _edit(
        copy,
        "governance.toml",
        '  "publication_elearning",\n]\neducational_purposes',
        '  "publication_elearning",\n  "conference_stand",\n]\neducational_purposes',
    )
    with pytest.raises(GovernancePolicyError, match="educational"):
        load_policy(copy)


def test_unknown_placeholder_refused(copy):
    _edit(copy, "export_terms.txt", "${purpose}", "${patient_name}")
    with pytest.raises(GovernancePolicyError, match="unknown placeholders"):
        load_policy(copy)


def test_quorum_must_be_positive(copy):
    _edit(copy, "governance.toml", "quorum = 2", "quorum = 0")
    with pytest.raises(GovernancePolicyError, match="quorum must be at least 1"):
        load_policy(copy)

"""`archive node join` refuses, creating nothing, unless the source shares its database
and storage, the passphrase opens the keyring copy and the pin is that keyring's key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from archive.audit import AuditError
from archive.audit.anchor import PIN_NAME
from archive.audit.log import public_key_bytes
from archive.errors import ConfigError
from archive.serve.home import init_home
from archive.serve.join import join_node
from archive.vault import KdfParams, Keyring, KeyringError
from archive.vault.keyring import keyring_path

FAST = KdfParams(time_cost=1, memory_cost=1024, parallelism=1)
PASS = "the archive's passphrase"


def _source(tmp_path: Path, storage: str) -> Path:
    config = init_home(tmp_path / "src", http_port=18042, dicom_port=14242)
    Keyring.create(keyring_path(config.home.keys_dir), PASS, kdf=FAST)
    raw = tomllib.loads(config.home.config_file.read_text())
    raw["database"] = {"kind": "postgresql", "host": "127.0.0.1", "port": 1}
    raw["storage"] = {"kind": storage}
    config.home.config_file.write_text(tomli_w.dumps(raw))
    return config.home.root


def _join(source: Path, target: Path, passphrase: str = PASS):
    return join_node(target, source, passphrase, http_host="127.0.0.3", http_port=18043,
                     dicom_host="127.0.0.3", dicom_port=14243)  # fmt: skip


def test_a_source_without_shared_storage_is_refused(tmp_path):
    source = _source(tmp_path, "home")
    with pytest.raises(ConfigError, match="shares the encrypted storage"):
        _join(source, tmp_path / "node")
    assert not (tmp_path / "node").exists()


def test_another_passphrase_is_refused_and_nothing_is_left(tmp_path):
    source = _source(tmp_path, "postgresql")
    with pytest.raises(KeyringError):
        _join(source, tmp_path / "node", "not the passphrase")
    assert not (tmp_path / "node").exists()


def test_a_pin_of_another_key_is_refused(tmp_path):
    source = _source(tmp_path, "postgresql")
    other = public_key_bytes(Ed25519PrivateKey.generate())
    (source / "keys" / PIN_NAME).write_text(other.hex() + "\n")
    with pytest.raises(AuditError, match="not the key pinned"):
        _join(source, tmp_path / "node")
    assert not (tmp_path / "node").exists()

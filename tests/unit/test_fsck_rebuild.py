"""Rebuilding a lost type-3 ("DICOM until pixel data") attachment from the DICOM file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from archive.backup.orthanc_index import Attachment
from archive.fsck.rebuild import rebuild_until_pixel_data
from archive.vault import EncryptedStore, Keyring, keyring_path
from archive.vault.sealing import KdfParams
from tests.corpus import make_ct_series, to_bytes

FAST = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)
UUID1 = "11111111-aaaa-bbbb-cccc-000000000001"
UUID3 = "33333333-aaaa-bbbb-cccc-000000000003"


@pytest.fixture
def store(tmp_path: Path) -> EncryptedStore:
    ring = Keyring.create(keyring_path(tmp_path / "keys"), "a passphrase for tests", kdf=FAST)
    return EncryptedStore(tmp_path / "storage", ring, fsync=False)


def _instance(store: EncryptedStore) -> tuple[bytes, bytes]:
    data = to_bytes(make_ct_series(1)[0])
    offset = data.index(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data, little endian
    store.write(UUID1, 1, data)
    return data, data[:offset]


def _att(uuid: str, ct: int, payload: bytes, resource: str = "inst-1") -> Attachment:
    return Attachment(uuid, ct, resource, len(payload), hashlib.md5(payload).hexdigest())  # noqa: S324


def test_rebuild_is_byte_exact(store: EncryptedStore) -> None:
    data, prefix = _instance(store)
    assert rebuild_until_pixel_data(store, _att(UUID3, 3, prefix), _att(UUID1, 1, data)) is None
    assert store.read(UUID3, 3) == prefix


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda p: p[:-1] + b"X", "MD5"),  # the index says other bytes
        (lambda p: p + b"\0" * 10**7, "size"),  # longer than the DICOM file
        (lambda p: p, "different instances"),
    ],
)
def test_rebuild_refuses_what_it_cannot_prove(store: EncryptedStore, tamper, reason) -> None:
    data, prefix = _instance(store)
    lost = _att(UUID3, 3, tamper(prefix), resource="other" if "different" in reason else "inst-1")
    refusal = rebuild_until_pixel_data(store, lost, _att(UUID1, 1, data))
    assert refusal is not None and reason in refusal
    assert not store.exists(UUID3, 3)


def test_rebuild_refuses_an_unreadable_dicom_file(store: EncryptedStore) -> None:
    data, prefix = _instance(store)
    path = store.path_for(UUID1, 1)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 1
    path.write_bytes(bytes(raw))
    refusal = rebuild_until_pixel_data(store, _att(UUID3, 3, prefix), _att(UUID1, 1, data))
    assert refusal is not None and "cannot be read" in refusal

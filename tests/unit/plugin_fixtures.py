"""A real archive home and runtime for plugin unit tests with tests/fake_orthanc.py."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from archive.runtime import Runtime
from archive.serve.home import init_home
from archive.vault import Keyring
from archive.vault.keyring import keyring_path
from archive.vault.sealing import KdfParams
from tests.fake_orthanc import FakeOrthanc
from tests.harness import free_port

PASSPHRASE = "correct horse battery staple, for tests only"
PASSWORD = "a-long-password-1"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    config = init_home(tmp_path / "home", http_port=free_port(), dicom_port=free_port())
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)
    monkeypatch.setenv("ARCHIVE_KEYRING_PASSPHRASE_FILE", str(secret))
    fast = KdfParams(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    Keyring.create(keyring_path(config.home.keys_dir), PASSPHRASE, kdf=fast)
    rt = Runtime.open(config)
    yield rt
    rt.audit.close()


@pytest.fixture
def fake() -> FakeOrthanc:
    return FakeOrthanc()


@pytest.fixture
def services(runtime: Runtime, fake: FakeOrthanc):
    """The plugin's Services on the fake, with personnel "pat" and trainer "tom"."""
    from plugins.services import Services

    built = Services(runtime, orthanc=fake)
    store = built.access_store()
    store.accounts.hasher = CHEAP
    now = datetime.now(UTC)
    store.add_user("pat", PASSWORD, ["personnel"], now, by="test")
    store.add_user("tom", PASSWORD, ["trainer"], now, by="test")
    store.record_training("tom", date.today(), now, "pat")
    return built

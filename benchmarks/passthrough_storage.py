"""Benchmarks only: a pass-through (clear) storage area in the vault's layout, so that
bench_crypto.py can compare the same pipeline with and without encryption.

Registered in place of plugins/storage.py by benchmarks/plugin_entry.py when
ARCHIVE_BENCH_PASSTHROUGH_STORAGE=1; the production plugin has no such switch. It is
loud: an error line in Orthanc's log and a `security.passthrough_storage` audit record,
and it refuses an archive reachable from the network. Never on an archive holding data.
"""

from __future__ import annotations

import os

from archive.audit import AuditEvent
from archive.errors import ConfigError
from archive.serve.orthanc_config import LOOPBACK
from archive.vault.fsutil import atomic_write

ENV = "ARCHIVE_BENCH_PASSTHROUGH_STORAGE"


def refuse_unless_loopback(services, env: str) -> None:
    if services.config.http.host not in LOOPBACK or services.config.http.tls:
        raise ConfigError(
            f"{env}=1 is only accepted on a loopback-only archive "
            "(http.host 127.0.0.1, no TLS); unset it and restart"
        )


def register(orthanc, services) -> None:
    refuse_unless_loopback(services, ENV)
    root = services.home.storage_dir
    orthanc.LogError(
        "teaching-archive: WARNING: PASS-THROUGH STORAGE AREA (benchmarks only): "
        f"{ENV}=1, attachments are stored IN CLEAR in {root}"
    )
    services.record(
        AuditEvent(
            action="security.passthrough_storage",
            outcome="success",
            actor="system",
            detail={"storage_dir": str(root), "env": ENV},
        )
    )

    def path_for(uuid: str, content_type) -> os.PathLike:
        return root / uuid[0:2] / uuid[2:4] / f"{uuid}.{int(content_type)}"

    def create(uuid: str, content_type, data: bytes) -> None:
        path = path_for(uuid, content_type)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, bytes(data))

    def read(uuid: str, content_type) -> bytes:
        with open(path_for(uuid, content_type), "rb") as handle:
            return handle.read()

    def remove(uuid: str, content_type) -> None:
        try:
            os.unlink(path_for(uuid, content_type))
        except FileNotFoundError:
            pass

    orthanc.RegisterStorageArea(create, read, remove)

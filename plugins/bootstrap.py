"""Load the archive home named in Orthanc's configuration and register every adapter.

orthanc-python 4.0 allows one callback per kind, so each adapter module owns one kind
and this file is the single place where they are registered. Anything that cannot be
set up (configuration, keyring, policy) stops Orthanc: fail closed.
"""

from __future__ import annotations

import json
import os

import orthanc

from archive import __version__
from archive.audit import AuditEvent
from archive.config import load_config
from archive.errors import ArchiveError
from archive.runtime import Runtime

PLUGIN_NAME = "teaching-archive"


class PluginStartError(RuntimeError):
    """Raised at load time so that Orthanc refuses to serve on a broken configuration."""


def _home_from_orthanc() -> str:
    raw = json.loads(orthanc.GetConfiguration())
    section = raw.get("TeachingArchive") or {}
    home = section.get("Home")
    if not home:
        raise PluginStartError(
            "TeachingArchive.Home is missing from Orthanc's configuration; start Orthanc "
            "with `archive serve --home DIR`, which generates it."
        )
    return home


def start() -> Runtime:
    try:
        runtime = Runtime.open(load_config(_home_from_orthanc()), prompt=False)
        _register_adapters(runtime)
    except (ArchiveError, PluginStartError) as exc:
        orthanc.LogError(f"teaching-archive: refusing to start: {exc}")
        raise PluginStartError(str(exc)) from None
    unencrypted = os.environ.get("ARCHIVE_UNENCRYPTED_VOLUME") == "1"
    runtime.record(
        AuditEvent(
            action="system.start",
            outcome="success",
            actor="system",
            detail={"version": __version__, "unencrypted_volume": unencrypted},
        )
    )
    orthanc.LogWarning(
        f"teaching-archive {__version__} loaded for home {runtime.config.home.root}"
        + (" (UNENCRYPTED data volume, allowed explicitly)" if unencrypted else "")
    )
    return runtime


def _register_adapters(runtime: Runtime) -> None:
    from archive.deid import DeidSecrets, load_policy
    from archive.ingest import IngestService
    from archive.quarantine import QuarantineStore
    from archive.vault.store import EncryptedStore
    from plugins import health, ingest, storage

    config = runtime.config
    policy = load_policy(config.policies_dir)
    quarantine = QuarantineStore(config.home, runtime.keyring, runtime.db())

    def hold(data: bytes, reason: str, **meta) -> str:
        return QuarantineStore(config.home, runtime.keyring, runtime.db()).hold(
            data, reason, **meta
        )

    del quarantine  # schema created; each thread opens its own connection
    service = IngestService(
        policy=policy,
        secrets=DeidSecrets(pseudonym_key=runtime.keyring.pseudonym_key),
        hold=hold,
        record=runtime.record,
    )
    storage.register(EncryptedStore(config.home.storage_dir, runtime.keyring), runtime.record)
    ingest.register(service)
    health.register(config)

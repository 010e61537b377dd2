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


# Adapters in registration order; each is plugins/<name>.py with `register(services)`.
# A name whose module does not exist yet is skipped, so rooms can land one at a time.
ADAPTERS = (
    "storage",  # storage area: envelope encryption of every attachment
    "ingest",  # received-instance callback: de-identification before storage
    "http_filter",  # named-user access control on every HTTP request
    "catalogue_sync",  # stable study -> teaching case
    "catalogue_routes",  # /teaching/cases, /teaching/collections
    "quarantine_routes",  # quarantine review
    "governance_routes",  # pulls, removals, shares, closure
    "workstation_routes",  # workstation sessions (who a workstation's retrieves are for)
    "sharing_routes",  # recipients, share proposals, Board decisions, the register
    "closure_routes",  # closure transfer, consent withdrawals
    "web",  # the web interface
    "health",  # /teaching/health
)


def _register_adapters(runtime: Runtime) -> None:
    import importlib
    import importlib.util

    from plugins.services import Services

    services = Services(runtime)
    services.quarantine()  # create the quarantine tables before any instance arrives
    for name in ADAPTERS:
        if importlib.util.find_spec(f"plugins.{name}") is None:
            continue
        module = importlib.import_module(f"plugins.{name}")
        module.register(services)
    services.change_hooks.append(_flush_audit_on_stop(runtime))


def _flush_audit_on_stop(runtime: Runtime):
    """Write queued audit records and the head file while Orthanc stops.

    The group-commit writer is a daemon thread: without this, a record queued just
    before SIGTERM could miss the head update when the interpreter is torn down, and
    `archive audit verify` would report the end as unconfirmed.
    """

    def hook(change_type, level, resource_id) -> None:  # noqa: ARG001 - change API
        if change_type == orthanc.ChangeType.ORTHANC_STOPPED:
            runtime.record(AuditEvent(action="system.stop", outcome="success", actor="system"))
            runtime.audit.close()

    return hook

"""Load the archive home named in Orthanc's configuration and register every adapter.

orthanc-python 4.0 allows one callback per kind, so each adapter module owns one kind
and this file is the single place where they are registered. The `orthanc` module comes
in as a parameter (plugins/teaching_archive.py, the one file Orthanc loads, passes it;
unit tests pass tests/fake_orthanc.py). Every adapter is mandatory: a module that is
missing, fails to import or fails to register stops Orthanc with one clear line, as does
anything else that cannot be set up (configuration, keyring, policy). Fail closed: a
missing HTTP filter would mean no access control.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from typing import Any

from archive import __version__
from archive.audit import AuditEvent
from archive.config import load_config
from archive.errors import ArchiveError
from archive.runtime import Runtime

PLUGIN_NAME = "teaching-archive"

# Adapters in registration order; each is plugins/<name>.py with `register(orthanc,
# services)`. Every one is mandatory: a missing module stops the start.
ADAPTERS = (
    "storage",  # storage area: envelope encryption of every attachment
    "ingest",  # received-instance callback: de-identification before storage
    "http_filter",  # named-user access control on every HTTP request
    "catalogue_sync",  # stable study -> teaching case
    "cases_routes",  # /teaching/cases
    "thumbnail_routes",  # /teaching/cases/{id}/series/{n}/thumbnail
    "collections_routes",  # /teaching/collections
    "quarantine_routes",  # quarantine review
    "pulls_routes",  # pulls to the suite's workstations
    "workstation_routes",  # workstation sessions: who a workstation's retrieves are for
    "removal_routes",  # removal requests and written decisions
    "removal_export_routes",  # an approved removal's package
    "recipient_routes",  # the register of recipients
    "share_routes",  # share proposals, Board decisions and votes, undertakings
    "share_register_routes",  # the share register, revocations, execution
    "closure_routes",  # closure transfer
    "withdrawal_routes",  # consent withdrawals
    "web",  # the web interface
    "health",  # /teaching/health
)


class PluginStartError(RuntimeError):
    """Raised at load time so that Orthanc refuses to serve on a broken configuration."""


def _home_from_orthanc(orthanc) -> str:
    home = (json.loads(orthanc.GetConfiguration()).get("TeachingArchive") or {}).get("Home")
    if not home:
        raise PluginStartError(
            "TeachingArchive.Home is missing from Orthanc's configuration; start Orthanc "
            "with `archive serve --home DIR`, which generates it."
        )
    return home


def start(orthanc, adapters: Sequence[str] = ADAPTERS) -> Runtime:
    """Open the home and register `adapters` (module names), all of them or none.

    Only a benchmark's own entry file (benchmarks/plugin_entry.py) passes another list:
    the production entry registers ADAPTERS, whatever the environment says."""
    try:
        runtime = Runtime.open(load_config(_home_from_orthanc(orthanc)), prompt=False)
        register_adapters(orthanc, runtime, adapters)
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


def load_adapter(name: str) -> Any:
    """Import one adapter module (plugins/<name>.py, or a dotted module name); a missing
    or broken one is a PluginStartError."""
    try:
        module = importlib.import_module(name if "." in name else f"plugins.{name}")
    except ModuleNotFoundError as exc:
        raise PluginStartError(
            f"adapter {name} is missing ({exc.name} not found); every adapter is mandatory: "
            "restore the archive's plugins/ directory (git status shows what is missing)."
        ) from None
    except Exception as exc:  # noqa: BLE001 - any import failure stops the start
        raise PluginStartError(
            f"adapter {name} cannot be loaded ({type(exc).__name__}); see the lines above "
            "in Orthanc's log, fix it and start again."
        ) from None
    if not callable(getattr(module, "register", None)):
        raise PluginStartError(f"adapter {name} has no register(orthanc, services); fix it.")
    return module


def register_adapters(orthanc, runtime: Runtime, adapters: Sequence[str] = ADAPTERS):
    """Import every adapter first (nothing is registered if one is missing), then
    register each; any failure stops the start."""
    from plugins.services import Services

    modules = [load_adapter(name) for name in adapters]
    services = Services(runtime, orthanc=orthanc)
    services.quarantine()  # create the quarantine tables before any instance arrives
    for name, module in zip(adapters, modules, strict=True):
        try:
            module.register(orthanc, services)
        except (ArchiveError, PluginStartError):
            raise  # their message already says what to fix
        except Exception as exc:  # noqa: BLE001 - any failure stops the start
            raise PluginStartError(
                f"adapter {name} failed to register ({type(exc).__name__}: {exc}); "
                "fix the cause and start again."
            ) from None
    services.change_hooks.append(_flush_audit_on_stop(orthanc, runtime))
    return services


def _flush_audit_on_stop(orthanc, runtime: Runtime):
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

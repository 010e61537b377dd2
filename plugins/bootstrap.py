"""Load the archive home named in Orthanc's configuration and register every adapter.

orthanc-python 4.0 allows one callback per kind, so each adapter module owns one kind
and this file is the single place where they are registered.
"""

from __future__ import annotations

import json

import orthanc

from archive import __version__
from archive.config import ArchiveConfig, load_config
from archive.errors import ArchiveError

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


def start() -> ArchiveConfig:
    try:
        config = load_config(_home_from_orthanc())
    except (ArchiveError, PluginStartError) as exc:
        orthanc.LogError(f"teaching-archive: refusing to start: {exc}")
        raise PluginStartError(str(exc)) from None

    from plugins import health

    health.register(config)
    orthanc.LogWarning(
        f"teaching-archive {__version__} loaded for home {config.home.root} "
        f"(Orthanc {orthanc.GetOrthancVersion() if hasattr(orthanc, 'GetOrthancVersion') else ''})"
    )
    return config

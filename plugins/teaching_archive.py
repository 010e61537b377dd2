"""Orthanc's entry script for the teaching archive (named by PythonScript in orthanc.json).

It puts the repository and its virtual environment on sys.path (the plugin embeds
Debian's libpython3.11, which knows nothing of .venv), then hands the `orthanc` module
over to plugins.bootstrap. This is the only file that imports `orthanc`: every adapter
takes it as a parameter. Any error here stops Orthanc: an archive that cannot load its
configuration, or misses an adapter, must not serve.
"""

import site
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
_VENV_SITE = _REPO / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
_before = list(sys.path)
site.addsitedir(str(_VENV_SITE / "site-packages"))
# The venv must win over Debian's dist-packages (e.g. its older cryptography), so its
# entries (and the repository) go to the front rather than where addsitedir put them.
_added = [entry for entry in sys.path if entry not in _before]
sys.path[:] = [str(_REPO), *_added, *[e for e in _before if e != str(_REPO)]]

import orthanc  # noqa: E402

from plugins import bootstrap  # noqa: E402

bootstrap.start(orthanc)

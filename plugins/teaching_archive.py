"""Orthanc's entry script for the teaching archive (named by PythonScript in orthanc.json).

It puts the repository and its virtual environment on sys.path (the plugin embeds
Debian's libpython3.11, which knows nothing of .venv), then hands over to
plugins.bootstrap. Any error here stops Orthanc: an archive that cannot load its
configuration must not serve.
"""

import site
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
_VENV_SITE = _REPO / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))
site.addsitedir(str(_VENV_SITE / "site-packages"))

from plugins import bootstrap  # noqa: E402

bootstrap.start()

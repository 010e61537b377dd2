#!/usr/bin/env bash
# Install whatever is missing for the teaching archive, and nothing else.
# Idempotent and quiet when everything is already there. Run as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the archive and its tests use (bookworm).
DEBS=(
  orthanc orthanc-python orthanc-postgresql dcmtk dicom3tools
  tesseract-ocr gocryptfs fuse3 python3.11 python3.11-venv
  postgresql chromium chromium-driver fonts-dejavu-core nginx-light gcc libc6-dev
  age
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "error: missing packages need root; run make setup as root or install sudo." >&2
    exit 1
  fi
fi

missing=()
for pkg in "${DEBS[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Never let package scripts start the system Orthanc or PostgreSQL services.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    created_policy=1
  fi
  $SUDO apt-get update -qq
  if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/archive-apt.log 2>&1; then
    tail -n 30 /tmp/archive-apt.log >&2
    echo "error: apt-get could not install ${missing[*]} (log: /tmp/archive-apt.log)." >&2
    exit 1
  fi
  [ "$created_policy" = 1 ] && $SUDO rm -f "$policy"
fi

# The Orthanc Python plugin embeds Debian's libpython3.11, so the virtual environment
# must be built from Debian's /usr/bin/python3.11 (not another 3.11 on PATH).
PY=/usr/bin/python3.11
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.base_prefix == "/usr" else 1)' 2>/dev/null; then
  echo "setup: creating .venv from $PY"
  rm -rf .venv
  "$PY" -m venv .venv
fi

stamp=.venv/.installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing the archive and its pinned dependencies into .venv"
  log=.venv/pip-install.log
  if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip &&
         .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "error: pip could not install the archive's dependencies (log: $log)." >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

# The browser viewer: OHIF v3's prebuilt dist from npm (@ohif/app, pinned and checked),
# unpacked into vendor/ohif and re-rooted at /teaching/ui/viewer/ (ops/ohif/install.py).
# npm is needed once, to fetch the package: Debian's npm unless a node install brings its own.
if ! command -v npm >/dev/null 2>&1 && [ ! -f vendor/ohif/.installed ]; then
  echo "setup: installing Debian's npm (to fetch the viewer)"
  $SUDO apt-get install -y -qq --no-install-recommends npm >/tmp/archive-apt.log 2>&1 ||
    { tail -n 30 /tmp/archive-apt.log >&2; echo "error: apt-get could not install npm." >&2; exit 1; }
fi
.venv/bin/python ops/ohif/install.py

"""Install OHIF v3's prebuilt viewer (npm @ohif/app, MIT) for the archive to serve.

Run by ops/setup.sh (stdlib only). Idempotent and quiet when the installed copy is
current. What it does, and why (README "The viewer"):

1. `npm pack @ohif/app@VERSION` into vendor/ (once; the tarball is kept so a reinstall
   needs no network) and checks the tarball against the registry's pinned sha512;
2. unpacks package/dist/ into vendor/ohif/, leaving out what the archive never serves:
   the ONNX runtime (ort/, 136 MB, AI segmentation), the microscopy viewer, the service
   worker, Google/OIDC sign-in helpers, the example customizations and the deploy files;
3. re-roots the webpack bundles and stylesheets at /teaching/ui/viewer/ (the prebuilt
   dist assumes "/") and replaces index.html (no inline script, no service worker: the viewer's CSP allows
   only 'self' scripts) and app-config.js by the versioned ones next to this file.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

VERSION = "3.13.2"
INTEGRITY = (
    "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5"
    "xXZB9E8EA=="
)
BASE = "/teaching/ui/viewer/"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENDOR = REPO / "vendor"
TARGET = VENDOR / "ohif"
TARBALL = VENDOR / f"ohif-app-{VERSION}.tgz"
LEFT_OUT = (
    "ort/", "dicom-microscopy-viewer/", "customizations/", "sw.js", "init-service-worker.js",
    "google.js", "oidc-client.min.js", "silent-refresh.html", "_redirects", "_headers",
    "serve.json", "index.html", "app-config.js",
)  # fmt: skip
OURS = ("app-config.js", "viewer-init.js", "viewer.css", "index.template.html")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def stamp_value() -> str:
    digest = hashlib.sha256(VERSION.encode())
    for name in ("install.py", *OURS):
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()


def fetch() -> None:
    if TARBALL.exists():
        return
    if shutil.which("npm") is None:
        fail("npm is missing; install Debian's npm (make setup does) and run make setup again.")
    print(f"setup: fetching the OHIF viewer @ohif/app@{VERSION} (npm pack, ~50 MB)")
    VENDOR.mkdir(exist_ok=True)
    run = subprocess.run(
        ["npm", "pack", f"@ohif/app@{VERSION}", "--pack-destination", str(VENDOR), "--silent"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if run.returncode != 0 or not TARBALL.exists():
        fail(f"npm pack @ohif/app@{VERSION} failed: {run.stderr.strip()[-300:]}")


def verify() -> None:
    algo, _, expected = INTEGRITY.partition("-")
    actual = base64.b64encode(hashlib.new(algo, TARBALL.read_bytes()).digest()).decode()
    if actual != expected:
        TARBALL.unlink()
        fail(f"{TARBALL.name} does not match the pinned {algo}; removed it, run make setup again.")


def unpack() -> None:
    staging = VENDOR / "ohif.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(TARBALL) as tar:
        for member in tar.getmembers():
            if not member.name.startswith("package/dist/") or not member.isfile():
                continue
            rel = member.name[len("package/dist/") :]
            if any(rel == p or rel.startswith(p) for p in LEFT_OUT) or ".." in rel.split("/"):
                continue
            out = staging / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(out, "wb") as dst:  # type: ignore[union-attr]
                shutil.copyfileobj(src, dst)
    rerooted = 0
    for script in staging.glob("*.js"):
        text = script.read_text(encoding="utf-8", errors="surrogateescape")
        new = text.replace('__webpack_require__.p = "/";', f'__webpack_require__.p = "{BASE}";')
        if new != text:
            rerooted += 1
            script.write_text(new, encoding="utf-8", errors="surrogateescape")
    for sheet in staging.glob("*.css"):  # fonts and images named from the root
        text = sheet.read_text(encoding="utf-8")
        sheet.write_text(text.replace("url(/", f"url({BASE}"), encoding="utf-8")
    bundles = sorted(p.name for p in staging.glob("app.bundle.*.js"))
    if len(bundles) != 1 or rerooted == 0:
        fail("the OHIF package does not have the expected shape (one app bundle, webpack "
             "public path '/'); the installer needs updating for this version.")  # fmt: skip
    template = (HERE / "index.template.html").read_text(encoding="utf-8")
    (staging / "index.html").write_text(
        template.replace("{{BASE}}", BASE).replace("{{APP_BUNDLE}}", bundles[0]), encoding="utf-8"
    )
    for name in ("app-config.js", "viewer-init.js", "viewer.css"):
        shutil.copyfile(HERE / name, staging / name)
    (staging / ".installed").write_text(stamp_value() + "\n", encoding="utf-8")
    shutil.rmtree(TARGET, ignore_errors=True)
    staging.rename(TARGET)


def main() -> None:
    stamp = TARGET / ".installed"
    if stamp.exists() and stamp.read_text().strip() == stamp_value():
        return
    fetch()
    verify()
    unpack()
    size = sum(p.stat().st_size for p in TARGET.rglob("*") if p.is_file())
    print(f"setup: OHIF viewer {VERSION} installed in {TARGET} ({size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()

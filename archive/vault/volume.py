"""The encrypted volume under the data directory: gocryptfs here, LUKS2 on servers.

gocryptfs (FUSE) keeps the ciphertext in HOME/volume and shows the plaintext at
HOME/data while mounted; it needs no device-mapper, so it works on machines like these.
Its password is handed over on stdin, never on a command line (visible in /proc) and
never in a file. The archive uses the keyring's `volume_secret` as that password, so
the volume lives and dies with the keyring.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from archive.paths import HomePaths
from archive.vault.errors import VolumeError
from archive.vault.fsutil import ensure_private_dir

GOCRYPTFS_CONF = "gocryptfs.conf"
_TIMEOUT = 120

# gocryptfs exit codes (gocryptfs/internal/exitcodes)
_EXIT_REASONS = {
    6: "the backing directory is not a gocryptfs volume",
    9: "the password was empty",
    10: "the data directory is not empty; move its contents aside, mount, then copy them in",
    12: "the volume password is wrong (is this the keyring that created the volume?)",
    17: "the volume configuration (gocryptfs.conf) is damaged; restore HOME/volume/"
    "gocryptfs.conf from a backup",
    23: "the volume configuration gocryptfs.conf is missing; run archive volume create",
}


@dataclass(frozen=True)
class VolumeStatus:
    kind: str  # "gocryptfs" | "luks" | "none"
    mounted: bool
    backing_dir: Path | None
    encrypted: bool  # True only when the data directory is served by an encrypted volume
    mount_point: Path | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["backing_dir"] = str(self.backing_dir) if self.backing_dir else None
        data["mount_point"] = str(self.mount_point) if self.mount_point else None
        return data


def _home(home: HomePaths | Path | str) -> HomePaths:
    return home if isinstance(home, HomePaths) else HomePaths(Path(home).expanduser().resolve())


def fuse_usable() -> tuple[bool, str]:
    """Whether gocryptfs can mount here, and if not, why."""
    if shutil.which("gocryptfs") is None:
        return False, "gocryptfs is not installed (apt-get install gocryptfs)"
    if shutil.which("fusermount") is None and shutil.which("fusermount3") is None:
        return False, "fusermount is not installed (apt-get install fuse3)"
    try:
        fd = os.open("/dev/fuse", os.O_RDWR)
    except OSError as exc:
        return False, f"/dev/fuse cannot be opened ({exc.strerror})"
    os.close(fd)
    return True, "ok"


def _unescape(field: str) -> str:
    """Decode the octal escapes of /proc/self/mountinfo (\\040 for a space...)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mount_of(path: Path) -> tuple[str, str] | None:
    """(fstype, source) of the mount whose mount point is exactly `path`."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        left, _, right = line.partition(" - ")
        parts, rest = left.split(), right.split()
        if len(parts) >= 5 and len(rest) >= 2 and Path(_unescape(parts[4])) == path:
            found = (rest[0], _unescape(rest[1]))  # the last one wins (stacked mounts)
    return found


def _is_dm_crypt(source: str) -> bool:
    if not source.startswith("/dev/"):
        return False
    try:
        real = Path(source).resolve()
        name = real.name
        uuid = Path(f"/sys/block/{name}/dm/uuid").read_text().strip()
    except OSError:
        return False
    return uuid.startswith("CRYPT-")


def status(home: HomePaths | Path | str) -> VolumeStatus:
    """What protects HOME/data right now."""
    paths = _home(home)
    data = paths.data_dir
    backing = paths.volume_dir
    mount = _mount_of(data)
    if mount is not None and mount[0] == "fuse.gocryptfs":
        return VolumeStatus("gocryptfs", True, Path(mount[1]), True, data)
    if mount is not None and _is_dm_crypt(mount[1]):
        return VolumeStatus("luks", True, Path(mount[1]), True, data, "dm-crypt device")
    if (backing / GOCRYPTFS_CONF).is_file():
        return VolumeStatus(
            "gocryptfs", False, backing, False, None, "volume exists but is not mounted"
        )
    detail = "plain directory" if mount is None else f"plain {mount[0]} mount"
    return VolumeStatus("none", mount is not None, None, False, None, detail)


def _run_gocryptfs(args: list[str], password: str) -> tuple[int, str]:
    """Run gocryptfs with the password on stdin. Output goes to a temporary file, not a
    pipe: the mount daemon inherits stdout/stderr and would keep a pipe open forever."""
    if not password or "\n" in password:
        raise VolumeError("The volume password must be one non-empty line.")
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(
                ["gocryptfs", *args],
                input=(password + "\n").encode("utf-8"),
                stdout=subprocess.DEVNULL,
                stderr=err,
                timeout=_TIMEOUT,
                check=False,
                # The mount daemon must outlive a signal sent to the caller's process
                # group (Ctrl-C, a supervisor's stop): `archive serve` unmounts it itself
                # once Orthanc has exited; killed first, it would leave a dead mount.
                start_new_session=True,
            )
        except FileNotFoundError:
            raise VolumeError("gocryptfs is not installed; apt-get install gocryptfs.") from None
        except subprocess.TimeoutExpired:
            raise VolumeError("gocryptfs did not finish in time; check /dev/fuse.") from None
        err.seek(0)
        return proc.returncode, err.read().decode("utf-8", "replace").strip()


def create(home: HomePaths | Path | str, passphrase: str) -> VolumeStatus:
    """Initialise the gocryptfs volume in HOME/volume (ciphertext side)."""
    paths = _home(home)
    backing = paths.volume_dir
    if (backing / GOCRYPTFS_CONF).exists():
        raise VolumeError(
            f"A volume already exists in {backing}; mount it with archive volume mount."
        )
    if backing.exists() and any(backing.iterdir()):
        raise VolumeError(f"{backing} is not empty; it must be empty to create a volume.")
    ensure_private_dir(backing)
    # -q keeps gocryptfs from printing the master key: the keyring must stay the only
    # way in, or destroying it at closure would not be enough.
    code, err = _run_gocryptfs(["-init", "-q", "--", str(backing)], passphrase)
    if code != 0:
        raise VolumeError(f"gocryptfs -init failed: {_EXIT_REASONS.get(code, err or code)}.")
    return status(paths)


def mount(home: HomePaths | Path | str, passphrase: str) -> VolumeStatus:
    """Mount HOME/volume on HOME/data and create the data sub-directories inside."""
    paths = _home(home)
    current = status(paths)
    if current.mounted and current.kind == "gocryptfs":
        return current
    if current.mounted:
        raise VolumeError(f"{paths.data_dir} is already a {current.detail}; unmount it first.")
    ok, why = fuse_usable()
    if not ok:
        raise VolumeError(f"Cannot mount the encrypted volume: {why}.")
    if not (paths.volume_dir / GOCRYPTFS_CONF).is_file():
        raise VolumeError(
            f"No encrypted volume in {paths.volume_dir}; create one with archive volume create."
        )
    ensure_private_dir(paths.data_dir)
    _remove_empty_tree(paths.data_dir)  # `archive init` made empty sub-directories
    if any(paths.data_dir.iterdir()):
        raise VolumeError(
            f"{paths.data_dir} holds files in clear; move them aside, mount, copy them into "
            f"the mounted volume, then shred the clear copies."
        )
    code, err = _run_gocryptfs(
        ["-q", "-nosyslog", "--", str(paths.volume_dir), str(paths.data_dir)], passphrase
    )
    if code != 0:
        raise VolumeError(f"Mounting failed: {_EXIT_REASONS.get(code, err or code)}.")
    for directory in paths.private_dirs():
        if paths.data_dir in directory.parents:
            ensure_private_dir(directory)
    os.chmod(paths.data_dir, 0o700)
    return status(paths)


def _remove_empty_tree(root: Path) -> None:
    """Remove directories below `root` that hold no files at any depth."""
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        path = Path(dirpath)
        if path != root:
            try:
                path.rmdir()
            except OSError:
                pass


_BUSY_TRIES = 10


def unmount(home: HomePaths | Path | str) -> VolumeStatus:
    """Unmount HOME/data; refuses while files are open (stop the archive first)."""
    paths = _home(home)
    current = status(paths)
    if not (current.mounted and current.kind == "gocryptfs"):
        return current
    tool = shutil.which("fusermount") or shutil.which("fusermount3") or "fusermount"
    # A process that was just stopped may hold a file for a moment more: a busy volume
    # is tried again for a few seconds before the refusal.
    for attempt in range(_BUSY_TRIES):
        proc = subprocess.run(
            [tool, "-u", str(paths.data_dir)], capture_output=True, timeout=_TIMEOUT, check=False
        )
        if proc.returncode == 0 or b"busy" not in proc.stderr.lower():
            break
        if attempt + 1 < _BUSY_TRIES:
            time.sleep(0.5)
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip()
        raise VolumeError(
            f"Unmounting {paths.data_dir} failed ({reason}); stop the archive (archive stop) "
            f"and close shells inside it, then try again."
        )
    return status(paths)

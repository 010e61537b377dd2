"""`archive volume create|mount|unmount|status`: the encrypted volume under HOME/data."""

from __future__ import annotations

from typer import Typer, echo

from archive.audit import AuditEvent, audit_log_for
from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail, load
from archive.errors import ArchiveError
from archive.vault import VolumeStatus, open_keyring_for_cli
from archive.vault import volume as vol


def _show(state: VolumeStatus, as_json: bool, configured: str) -> None:
    data = {**state.as_dict(), "configured_kind": configured}
    if as_json:
        emit_json(data)
        return
    echo(f"volume: {state.kind}  mounted: {state.mounted}  encrypted: {state.encrypted}")
    if state.backing_dir:
        echo(f"backing: {state.backing_dir}")
    if state.detail:
        echo(f"detail: {state.detail}")
    if configured != state.kind and not (configured == "none" and not state.encrypted):
        echo(f"note: archive.toml says volume.kind = {configured!r}")


def _audit(config, action: str) -> None:
    """Audit a volume step. The log lives inside the volume, so it is written only while
    the volume is mounted: after `mount`, before `unmount`. `create` runs before any
    volume exists (a file in the plain data directory would block the first mount); the
    volume's state is audited again by `archive serve` at every start."""
    try:
        audit_log_for(config.home).append(
            AuditEvent(action, "success", actor(), source="cli", detail={"kind": "gocryptfs"})
        )
    except ArchiveError as exc:
        fail(f"done, but the audit log refused the record: {exc}")


def register(app: Typer) -> None:
    sub = Typer(help="The encrypted volume (gocryptfs) holding HOME/data.", no_args_is_help=True)
    app.add_typer(sub, name="volume")

    @sub.command("create")
    def create_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """Create a gocryptfs volume in HOME/volume; its password comes from the keyring."""
        config = load(home)
        try:
            ring = open_keyring_for_cli(config)
            state = vol.create(config.home, ring.volume_secret)
        except ArchiveError as exc:
            fail(str(exc))
        _show(state, as_json, config.volume.kind)
        if not as_json:
            echo('Next: set volume.kind = "gocryptfs" in archive.toml, then archive volume mount.')

    @sub.command("mount")
    def mount_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """Mount HOME/volume (ciphertext) on HOME/data (plaintext view)."""
        config = load(home)
        try:
            ring = open_keyring_for_cli(config)
            state = vol.mount(config.home, ring.volume_secret)
        except ArchiveError as exc:
            fail(str(exc))
        _audit(config, "volume.mount")
        _show(state, as_json, config.volume.kind)

    @sub.command("unmount")
    def unmount_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """Unmount HOME/data (stop the archive first)."""
        config = load(home)
        if vol.status(config.home).mounted:
            _audit(config, "volume.unmount")
        try:
            state = vol.unmount(config.home)
        except ArchiveError as exc:
            fail(str(exc))
        _show(state, as_json, config.volume.kind)

    @sub.command("status")
    def status_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """What protects HOME/data now: gocryptfs, LUKS (dm-crypt) or nothing."""
        config = load(home)
        _show(vol.status(config.home), as_json, config.volume.kind)

"""`archive volume create|mount|unmount|status`: the encrypted volume under HOME/data."""

from __future__ import annotations

from typer import Typer, echo

from archive.cli.common import HomeOption, JsonOption, emit_json, fail, load
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
        _show(state, as_json, config.volume.kind)

    @sub.command("unmount")
    def unmount_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """Unmount HOME/data (stop the archive first)."""
        config = load(home)
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

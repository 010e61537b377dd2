"""A node on another host: its own home, pointing at the shared database and storage.

`join_node` makes a new home from three files copied from an existing node (its
archive.toml, keys/keyring.json and keys/audit_public_key): the same [database] and
[storage], this host's own [http]/[dicom] addresses and ports, the same keyring
(unlocked by the same passphrase, checked here) and the same pinned audit key. Nothing
that belongs to one machine is shared: the run directory, the Orthanc configuration,
the quarantine and the watch folder are this home's. See ops/SCALE-OUT.md.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from archive.audit.anchor import PIN_NAME, pin_public_key, read_pin
from archive.config import ArchiveConfig, load_config
from archive.errors import ConfigError
from archive.vault.keyring import Keyring, keyring_path


@dataclass(frozen=True)
class JoinSource:
    config: Path
    keyring: Path
    pin: Path | None


def find_source(source: Path) -> JoinSource:
    """The three files in `source`: a copied home (keys/ inside) or one flat directory."""
    source = Path(source).expanduser()
    keys = source / "keys" if (source / "keys" / "keyring.json").is_file() else source
    config, ring, pin = source / "archive.toml", keys / "keyring.json", keys / PIN_NAME
    for path, what in ((config, "archive.toml"), (ring, "keys/keyring.json")):
        if not path.is_file():
            raise ConfigError(
                f"{path} is missing: copy HOME/{what} of an existing node into {source}, "
                "then run this again."
            )
    return JoinSource(config=config, keyring=ring, pin=pin if pin.is_file() else None)


def _shared_settings(raw: dict) -> None:
    database = raw.get("database", {})
    storage = raw.get("storage", {})
    if not isinstance(database, dict) or database.get("kind") != "postgresql":
        raise ConfigError(
            "a node on another host shares the database: the source's archive.toml needs "
            '[database] kind = "postgresql" (see ops/SCALE-OUT.md).'
        )
    if not isinstance(storage, dict) or storage.get("kind") not in ("postgresql", "path"):
        raise ConfigError(
            "a node on another host shares the encrypted storage: set [storage] kind = "
            '"postgresql" (or "path" on a shared file system) in the source\'s archive.toml '
            "on every node first (see ops/SCALE-OUT.md)."
        )


def join_node(
    root: Path,
    source: Path,
    passphrase: str,
    *,
    http_host: str,
    http_port: int,
    dicom_host: str,
    dicom_port: int,
    operator: str = "local-operator",
) -> tuple[ArchiveConfig, Keyring]:
    """Make the home `root` of a new node (see the module doc); all or nothing."""
    from archive.serve.home import _undo as undo  # noqa: PLC0415
    from archive.serve.home import init_home  # noqa: PLC0415

    found = find_source(source)
    raw = tomllib.loads(found.config.read_text(encoding="utf-8"))
    _shared_settings(raw)
    archive = raw.get("archive", {})
    dicom = dict(raw.get("dicom", {}))
    root = Path(root).expanduser().resolve()
    created_root = not root.exists()
    config = init_home(
        root,
        http_port=http_port,
        dicom_port=dicom_port,
        dicom_aet=str(dicom.get("aet", "TEACHARCHIVE")),
        school_prefix=str(archive.get("school_prefix", "NSR")),
    )
    home = config.home
    try:
        raw.pop("nodes", None)  # another home's extra nodes are not this home's
        raw["http"] = {**raw.get("http", {}), "host": http_host, "port": http_port}
        raw["dicom"] = {**dicom, "host": dicom_host, "port": dicom_port}
        tmp = home.config_file.with_name(".archive.toml.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(tomli_w.dumps(raw))
        os.replace(tmp, home.config_file)
        target = keyring_path(home.keys_dir)
        shutil.copyfile(found.keyring, target)
        os.chmod(target, 0o600)
        ring = Keyring.open(target, passphrase)  # KeyringError: not the same passphrase
        if found.pin is not None:
            shutil.copyfile(found.pin, home.keys_dir / PIN_NAME)
            os.chmod(home.keys_dir / PIN_NAME, 0o600)
            read_pin(home.keys_dir)  # a damaged copy is refused here, not at first write
        pin_public_key(home.keys_dir, ring.audit_public_key_bytes)  # AuditError if another
        config = load_config(home.root)
        from archive.access.tls import make_self_signed  # noqa: PLC0415
        from archive.serve import orthanc_config  # noqa: PLC0415

        make_self_signed(home, [config.http.host])
        orthanc_config.write(config, orthanc_config.render(config))
        _check_shared_chain(config, ring, operator)
        return config, ring
    except BaseException:
        undo(home, created_root)
        raise


def _check_shared_chain(config: ArchiveConfig, ring: Keyring, operator: str) -> None:
    """The shared audit chain verifies under this keyring's pinned key, and this node can
    append to it (the database is reachable with this home's settings)."""
    from archive.audit import AuditEvent, audit_log_for, verify_home  # noqa: PLC0415
    from archive.audit.events import AuditError  # noqa: PLC0415

    report = verify_home(config.home)
    if not report.ok:
        raise AuditError(
            "the shared audit chain does not verify with this keyring's pinned key, so this "
            "keyring is not that archive's or the chain was altered: "
            + "; ".join(report.problems[:3])
        )
    log = audit_log_for(config.home, signer=ring.audit_signing_key)
    try:
        log.append(
            AuditEvent(
                "node.join",
                "success",
                actor=operator,
                source="cli",
                detail={
                    "http": f"{config.http.host}:{config.http.port}",
                    "dicom": f"{config.dicom.host}:{config.dicom.port}",
                },
            ),
            sync=True,
        )
    finally:
        log.close()

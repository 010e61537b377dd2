"""The archive's configuration: one documented TOML file in the archive home.

Loading validates every field and raises ConfigError with a message that names the
field and says how to fix it, so Orthanc never starts on a half-understood config.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from archive.errors import ConfigError
from archive.paths import POLICIES_DIR, HomePaths


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8042
    tls: bool = False
    # The largest request body nginx lets through, for authenticated requests only
    # (uploads); anonymous requests are held to ANONYMOUS_BODY_LIMIT (archive/serve/tls_proxy.py).
    max_upload_mb: int = 512


@dataclass(frozen=True)
class DicomConfig:
    aet: str = "TEACHARCHIVE"
    port: int = 4242
    # The address the public DICOM port listens on (0.0.0.0: every interface, for PACS
    # and workstations on the school's network; 127.0.0.1: this machine only).
    host: str = "0.0.0.0"  # noqa: S104 - the configured default, documented in archive.toml


@dataclass(frozen=True)
class KeyringConfig:
    # Where the keyring passphrase comes from when not typed at a prompt: a file path,
    # or the name of a systemd credential (read from $CREDENTIALS_DIRECTORY).
    passphrase_file: str = ""
    systemd_credential: str = ""


@dataclass(frozen=True)
class VolumeConfig:
    # "gocryptfs" mounts HOME/volume (ciphertext) on HOME/data; "luks" means the data
    # directory is a mounted LUKS2 device provisioned by ops/; "none" is plain disk.
    kind: str = "none"
    allow_unencrypted: bool = False


DATABASE_KINDS = ("sqlite", "postgresql")
# Set by `archive serve --node N` in Orthanc's environment, so the plugin (which loads
# the config itself) sees the same node: its run directory, log and ports.
NODE_ENV = "ARCHIVE_NODE"
NODE_HTTP_PORT_ENV = "ARCHIVE_NODE_HTTP_PORT"
NODE_DICOM_PORT_ENV = "ARCHIVE_NODE_DICOM_PORT"


@dataclass(frozen=True)
class DatabaseConfig:
    """Where Orthanc's index and the archive's own tables live. "sqlite" is one node's
    own files (HOME/data/index, HOME/data/archive.db); "postgresql" is a shared server,
    so several Orthanc nodes can serve one archive: Orthanc's index in the database's
    public schema, the archive's tables in `schema` (archive.db.engine).
    The password is never here: `password_file` names a 0600 file holding it."""

    kind: str = "sqlite"
    host: str = "127.0.0.1"
    port: int = 5432
    database: str = "orthanc"
    user: str = "orthanc"
    password_file: str = ""
    ssl: bool = False
    index_connections: int = 1
    schema: str = "teaching_archive"

    @property
    def shared(self) -> bool:
        return self.kind == "postgresql"


@dataclass(frozen=True)
class StorageConfig:
    """[storage]: where the encrypted attachments live (archive/vault/FORMAT.md envelopes,
    keys in the keyring whatever the kind). "home": HOME/data/storage (one machine);
    "path": a shared file system every node mounts at `path`; "postgresql": rows of the
    archive's schema (vault_blob, bytea), needs [database] kind = "postgresql"."""

    kind: str = "home"
    path: str = ""

    @property
    def shared(self) -> bool:
        return self.kind != "home"


@dataclass(frozen=True)
class NodeConfig:
    """Ports of one extra Orthanc node (id 2, 3, ...); node 1 uses [http] and [dicom]."""

    id: int
    http_port: int
    dicom_port: int


@dataclass(frozen=True)
class NodePaths(HomePaths):
    """The home as one node sees it: node 1 is the plain home; node N >= 2 has its own
    run directory HOME/run/node-N (lock, Orthanc log, nginx files) and its own
    generated Orthanc configuration, and shares everything else (data, keys, policies)."""

    node: int = 1

    @property
    def run_dir(self) -> Path:
        base = self.root / "run"
        return base if self.node == 1 else base / f"node-{self.node}"

    @property
    def orthanc_config(self) -> Path:
        if self.node == 1:
            return self.orthanc_dir / "orthanc.json"
        return self.orthanc_dir / f"orthanc-node-{self.node}.json"


@dataclass(frozen=True)
class AuditConfig:
    """[audit]: how often the running archive signs a checkpoint (archive/audit/FORMAT.md)."""

    checkpoint_every: int = 100  # records
    checkpoint_minutes: float = 10.0  # also from a timer, so a quiet archive checkpoints


@dataclass(frozen=True)
class ArchiveConfig:
    home: HomePaths
    school_prefix: str = "NSR"
    policies_dir: Path = POLICIES_DIR
    http: HttpConfig = field(default_factory=HttpConfig)
    dicom: DicomConfig = field(default_factory=DicomConfig)
    keyring: KeyringConfig = field(default_factory=KeyringConfig)
    volume: VolumeConfig = field(default_factory=VolumeConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    nodes: tuple[NodeConfig, ...] = ()
    node: int = 1


def _section(raw: dict, name: str) -> dict:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table in archive.toml; see the comments there.")
    return value


def _port(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ConfigError(f"{name} must be a port number from 1 to 65535, not {value!r}.")
    return value


def _host(value: object, name: str = "http.host") -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be an IP address such as 127.0.0.1.")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if value != "localhost":
            raise ConfigError(
                f"{name} {value!r} is not an IP address; use 127.0.0.1 or 0.0.0.0."
            ) from None
    return value


def _megabytes(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65536:
        raise ConfigError(f"{name} must be a number of megabytes from 1 to 65536, not {value!r}.")
    return value


def _aet(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 16 or not value.isascii():
        raise ConfigError(f"dicom.aet must be 1 to 16 ASCII characters, not {value!r}.")
    if any(c in value for c in "\\") or value != value.strip():
        raise ConfigError(f"dicom.aet {value!r} has spaces or a backslash; remove them.")
    return value


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ConfigError(f"{name} must be a non-empty name without spaces, not {value!r}.")
    return value


def _database(raw: dict) -> DatabaseConfig:
    """[database]: either `dsn` (postgresql://user@host:port/database, no password) or
    host/port/database/user; the password only ever comes from `password_file`."""
    kind = raw.get("kind", "sqlite")
    if kind not in DATABASE_KINDS:
        raise ConfigError(f"database.kind must be one of {', '.join(DATABASE_KINDS)}.")
    fields = {k: raw[k] for k in ("host", "port", "database", "user") if k in raw}
    dsn = raw.get("dsn", "")
    if not isinstance(dsn, str):
        raise ConfigError("database.dsn must be a string such as postgresql://user@host/db.")
    if dsn:
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError("database.dsn must start with postgresql://.")
        if parts.password is not None:
            raise ConfigError(
                "database.dsn must not hold a password (it would end up in logs); remove "
                "it and put the password in the file named by database.password_file."
            )
        if parts.query:
            raise ConfigError("database.dsn options are not supported; use the [database] keys.")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError("database.dsn has an invalid port.") from None
        for key, value in (
            ("host", parts.hostname),
            ("port", port),
            ("database", unquote(parts.path.lstrip("/"))),
            ("user", unquote(parts.username or "")),
        ):
            if value:
                fields.setdefault(key, value)
    password_file = raw.get("password_file", "")
    if not isinstance(password_file, str):
        raise ConfigError("database.password_file must be a path (a string).")
    if password_file and not Path(password_file).is_absolute():
        raise ConfigError("database.password_file must be an absolute path.")
    ssl = raw.get("ssl", False)
    if not isinstance(ssl, bool):
        raise ConfigError("database.ssl must be true or false.")
    count = raw.get("index_connections", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 64:
        raise ConfigError("database.index_connections must be a number from 1 to 64.")
    schema = raw.get("schema", "teaching_archive")
    if not isinstance(schema, str) or not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise ConfigError("database.schema must be a lower-case SQL name such as teaching_archive.")
    if schema == "public":
        raise ConfigError("database.schema must not be public (that is Orthanc's index).")
    return DatabaseConfig(
        kind=kind,
        schema=schema,
        host=_text(fields.get("host", "127.0.0.1"), "database.host"),
        port=_port(fields.get("port", 5432), "database.port"),
        database=_text(fields.get("database", "orthanc"), "database.database"),
        user=_text(fields.get("user", "orthanc"), "database.user"),
        password_file=password_file,
        ssl=ssl,
        index_connections=count,
    )


def _nodes(raw: object, http_port: int, dicom_port: int) -> tuple[NodeConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
        raise ConfigError("[[nodes]] entries must be tables with id, http_port, dicom_port.")
    nodes: list[NodeConfig] = []
    taken = {http_port, dicom_port}
    for entry in raw:
        node_id = entry.get("id")
        if not isinstance(node_id, int) or isinstance(node_id, bool) or not 2 <= node_id <= 99:
            raise ConfigError(f"nodes.id must be a number from 2 to 99, not {node_id!r}.")
        if any(node.id == node_id for node in nodes):
            raise ConfigError(f"node {node_id} is listed twice in [[nodes]].")
        node = NodeConfig(
            id=node_id,
            http_port=_port(entry.get("http_port"), f"nodes[{node_id}].http_port"),
            dicom_port=_port(entry.get("dicom_port"), f"nodes[{node_id}].dicom_port"),
        )
        if node.http_port in taken or node.dicom_port in taken or node.http_port == node.dicom_port:
            raise ConfigError(f"node {node_id}'s ports clash with another node's; pick others.")
        taken |= {node.http_port, node.dicom_port}
        nodes.append(node)
    return tuple(nodes)


def for_node(
    config: ArchiveConfig,
    node: int,
    *,
    http_port: int | None = None,
    dicom_port: int | None = None,
) -> ArchiveConfig:
    """The configuration as node `node` runs it: its own ports and run directory.

    Node 1 is the home's [http]/[dicom]. Node N >= 2 needs a shared index
    (database.kind = "postgresql": Orthanc locks a SQLite index to one process) and its
    ports from a [[nodes]] entry or from the arguments."""
    if node < 1:
        raise ConfigError(f"--node must be 1 or more, not {node}.")
    if node > 1 and not config.database.shared:
        raise ConfigError(
            f'Node {node} needs a shared index: set [database] kind = "postgresql" in '
            f"{config.home.config_file} (a SQLite index belongs to one Orthanc process)."
        )
    entry = next((n for n in config.nodes if n.id == node), None)
    if node > 1 and entry is None and (http_port is None or dicom_port is None):
        raise ConfigError(
            f"Node {node} has no ports: add a [[nodes]] entry with id = {node}, http_port "
            f"and dicom_port to archive.toml, or pass --http-port and --dicom-port."
        )
    http = config.http
    dicom = config.dicom
    if entry is not None:
        http = replace(http, port=entry.http_port)
        dicom = replace(dicom, port=entry.dicom_port)
    if http_port is not None:
        http = replace(http, port=_port(http_port, "--http-port"))
    if dicom_port is not None:
        dicom = replace(dicom, port=_port(dicom_port, "--dicom-port"))
    if http.port == dicom.port:
        raise ConfigError(f"node {node}'s HTTP and DICOM ports must differ.")
    home = NodePaths(config.home.root, node=node)
    return replace(config, home=home, http=http, dicom=dicom, node=node)


def _env_port(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else None


def _storage(raw: dict, database: DatabaseConfig) -> StorageConfig:
    kind = raw.get("kind", "home")
    if kind not in ("home", "path", "postgresql"):
        raise ConfigError('storage.kind must be one of "home", "path", "postgresql".')
    path = raw.get("path", "")
    if not isinstance(path, str):
        raise ConfigError("storage.path must be a string (an absolute directory).")
    if kind == "path" and not (path and Path(path).is_absolute()):
        raise ConfigError(
            'storage.kind = "path" needs storage.path, the absolute directory of the shared '
            "file system every node mounts at the same place (e.g. /srv/archive-storage)."
        )
    if kind != "path" and path:
        raise ConfigError('storage.path is used only with storage.kind = "path"; remove it.')
    if kind == "postgresql" and not database.shared:
        raise ConfigError(
            'storage.kind = "postgresql" needs [database] kind = "postgresql" (the '
            "attachments go to the archive's schema of that database)."
        )
    return StorageConfig(kind=kind, path=path)


def _audit(raw: dict) -> AuditConfig:
    every = raw.get("checkpoint_every", 100)
    if isinstance(every, bool) or not isinstance(every, int) or not 2 <= every <= 100_000:
        raise ConfigError("audit.checkpoint_every must be a whole number from 2 to 100000.")
    minutes = raw.get("checkpoint_minutes", 10)
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not 0 < minutes <= 1440:
        raise ConfigError("audit.checkpoint_minutes must be a number above 0, at most 1440.")
    return AuditConfig(checkpoint_every=every, checkpoint_minutes=float(minutes))


def parse_config(raw: dict, home: HomePaths) -> ArchiveConfig:
    """Validate a decoded archive.toml."""
    archive = _section(raw, "archive")
    http = _section(raw, "http")
    dicom = _section(raw, "dicom")
    keyring = _section(raw, "keyring")
    volume = _section(raw, "volume")
    prefix = archive.get("school_prefix", "NSR")
    if not isinstance(prefix, str) or not prefix.isalnum() or not 2 <= len(prefix) <= 8:
        raise ConfigError("archive.school_prefix must be 2 to 8 letters or digits, e.g. NSR.")
    policies = archive.get("policies_dir", "")
    policies_dir = Path(policies) if policies else POLICIES_DIR
    if not policies_dir.is_dir():
        raise ConfigError(f"archive.policies_dir {policies_dir} is not a directory.")
    tls = http.get("tls", False)
    if not isinstance(tls, bool):
        raise ConfigError("http.tls must be true or false.")
    kind = volume.get("kind", "none")
    if kind not in ("none", "gocryptfs", "luks"):
        raise ConfigError("volume.kind must be one of none, gocryptfs, luks.")
    allow = volume.get("allow_unencrypted", False)
    if not isinstance(allow, bool):
        raise ConfigError("volume.allow_unencrypted must be true or false.")
    database = _database(_section(raw, "database"))
    http_port = _port(http.get("port", 8042), "http.port")
    dicom_port = _port(dicom.get("port", 4242), "dicom.port")
    if http_port == dicom_port:
        raise ConfigError("http.port and dicom.port must differ.")
    return ArchiveConfig(
        home=home,
        school_prefix=prefix,
        policies_dir=policies_dir,
        http=HttpConfig(
            host=_host(http.get("host", "127.0.0.1")),
            port=http_port,
            tls=tls,
            max_upload_mb=_megabytes(http.get("max_upload_mb", 512), "http.max_upload_mb"),
        ),
        dicom=DicomConfig(
            aet=_aet(dicom.get("aet", "TEACHARCHIVE")),
            port=dicom_port,
            host=_host(dicom.get("host", "0.0.0.0"), "dicom.host"),  # noqa: S104
        ),
        keyring=KeyringConfig(
            passphrase_file=str(keyring.get("passphrase_file", "")),
            systemd_credential=str(keyring.get("systemd_credential", "")),
        ),
        volume=VolumeConfig(kind=kind, allow_unencrypted=allow),
        database=database,
        audit=_audit(_section(raw, "audit")),
        storage=_storage(_section(raw, "storage"), database),
        nodes=_nodes(raw.get("nodes"), http_port, dicom_port),
    )


def load_config(home_dir: Path | str) -> ArchiveConfig:
    """Read and validate HOME/archive.toml."""
    home = HomePaths(Path(home_dir).expanduser().resolve())
    if not home.root.is_dir():
        raise ConfigError(
            f"No archive home at {home.root}. Create one with: archive init --home {home.root}"
        )
    if not home.config_file.is_file():
        raise ConfigError(
            f"{home.root} is not an archive home (no archive.toml). "
            f"Create one with: archive init --home {home.root}"
        )
    try:
        raw = tomllib.loads(home.config_file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{home.config_file} is not valid TOML ({exc}). Fix it, or move it away and "
            f"run archive init again."
        ) from None
    config = parse_config(raw, home)
    node = os.environ.get(NODE_ENV, "")
    if node.isdigit() and int(node) > 1:  # inside a node's Orthanc (set by serve --node)
        return for_node(
            config,
            int(node),
            http_port=_env_port(NODE_HTTP_PORT_ENV),
            dicom_port=_env_port(NODE_DICOM_PORT_ENV),
        )
    return config


def database_password(config: ArchiveConfig) -> str:
    """The PostgreSQL password from database.password_file, which must belong to this
    user and be unreadable by others (0600 or stricter). Empty when no file is set
    (peer or certificate authentication). Messages name the file, never its content."""
    name = config.database.password_file
    if not name:
        return ""
    path = Path(name)
    try:
        info = path.stat()
    except OSError:
        raise ConfigError(
            f"database.password_file {path} does not exist; create it (mode 0600) with the "
            "PostgreSQL password on one line."
        ) from None
    if info.st_mode & 0o077:
        raise ConfigError(
            f"database.password_file {path} is readable by others; run: chmod 600 {path}"
        )
    if info.st_uid != os.getuid():
        raise ConfigError(f"database.password_file {path} must belong to the archive's user.")
    try:
        password = path.read_text(encoding="utf-8").strip("\r\n")
    except (OSError, UnicodeDecodeError):
        password = ""  # a directory, unreadable or not text: the message below says what to do
    if not password or "\n" in password:
        raise ConfigError(
            f"database.password_file {path} must be a readable file holding the password "
            "on one line."
        )
    return password

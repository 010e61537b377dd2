"""`archive init`, `archive serve` and `archive status`: create, run and inspect a home."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Annotated

import typer

from archive import __version__, orthanc_config, server, tls_proxy
from archive.cli.common import HomeOption, JsonOption, emit_json, fail, load
from archive.config import database_password, for_node
from archive.errors import ArchiveError
from archive.home import check_home_permissions, init_home

NodeOption = Annotated[
    int,
    typer.Option(
        "--node",
        min=1,
        help="Which Orthanc node of this home (1, or 2+ with a PostgreSQL index).",
    ),
]


def init(
    home: HomeOption,
    http_port: Annotated[int, typer.Option(help="HTTP port of the web API.")] = 8042,
    dicom_port: Annotated[int, typer.Option(help="DICOM port of the archive.")] = 4242,
    aet: Annotated[str, typer.Option(help="The archive's DICOM AE title.")] = "TEACHARCHIVE",
    school_prefix: Annotated[str, typer.Option(help="Prefix of case ids.")] = "NSR",
) -> None:
    """Create a new archive home with secure defaults (0700 directories, loopback HTTP)."""
    try:
        config = init_home(
            home,
            http_port=http_port,
            dicom_port=dicom_port,
            dicom_aet=aet,
            school_prefix=school_prefix,
        )
    except ArchiveError as exc:
        fail(str(exc))
    typer.echo(f"Created archive home {config.home.root}")
    typer.echo(f"  configuration: {config.home.config_file}")
    typer.echo(f"  next: archive serve --home {config.home.root}")


def serve(
    home: HomeOption,
    allow_unencrypted_volume: Annotated[
        bool,
        typer.Option(
            "--allow-unencrypted-volume",
            help="Run on a plain data directory (recorded in status and the audit log).",
        ),
    ] = False,
    stable_age: Annotated[
        int, typer.Option(help="Seconds without new instances before a study is stable.")
    ] = 10,
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for Orthanc.")] = 90.0,
    node: NodeOption = 1,
    http_port: Annotated[
        int | None, typer.Option(help="This node's HTTP port (else [[nodes]] or [http]).")
    ] = None,
    dicom_port: Annotated[
        int | None, typer.Option(help="This node's DICOM port (else [[nodes]] or [dicom]).")
    ] = None,
) -> None:
    """Run Orthanc with the archive plugin in the foreground; Ctrl-C or SIGTERM stops it.

    With [database] kind = "postgresql", several nodes serve one home: `--node 2` (and
    up) runs another Orthanc on its own ports with its own lock and log in
    HOME/run/node-N, sharing the index, the encrypted storage, the archive database and
    the audit chain (ops/SCALE-OUT.md).

    The keyring is opened first (asking for its passphrase on a terminal when no file or
    credential is configured), so a wrong passphrase or a missing or corrupt keyring
    stops here with one line and nothing touched. The passphrase reaches Orthanc through
    an inherited pipe only. With volume.kind = "gocryptfs" the volume is mounted on
    HOME/data if needed, and unmounted again on stop."""
    # Handlers first: a SIGTERM during start-up (e.g. a supervisor stopping us at once)
    # must still stop Orthanc cleanly rather than kill serve and orphan it.
    stop = threading.Event()
    process = None

    def _on_signal(signum, frame) -> None:  # noqa: ARG001 - signal API
        stop.set()
        if process is None:  # nothing started yet (e.g. at the passphrase prompt): abort
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    config = _node_config(load(home), node, http_port, dicom_port)
    lock = server.HomeLock(config.home.lock_file)
    proxy = None
    pgpass = None
    decision = None
    read_fd = None
    dicom_front = None
    locked = False  # until then the nginx files in the run dir may be a running serve's
    try:
        server.find_orthanc()  # install problems first: no passphrase asked for nothing
        server.check_plugin_installed(orthanc_config.PYTHON_PLUGIN)
        if config.database.shared:
            server.check_plugin_installed(orthanc_config.POSTGRESQL_INDEX_PLUGIN)
            db_password = database_password(config)  # ConfigError: one line, no secret
        keyring, passphrase = server.unlock_keyring(config, interactive=sys.stdin.isatty())
        lock.acquire()
        locked = True
        allowed = allow_unencrypted_volume or config.volume.allow_unencrypted
        decision = server.prepare_volume(config, keyring, allow_unencrypted=allowed)
        del keyring
        if decision.unencrypted:
            why = (
                "--allow-unencrypted-volume"
                if allow_unencrypted_volume
                else "volume.allow_unencrypted"
            )
            typer.echo(
                f"warning: UNENCRYPTED data volume, allowed explicitly ({why}); "
                "recorded in the audit log",
                err=True,
            )
        for problem in check_home_permissions(config.home):
            typer.echo(f"warning: {problem}", err=True)
        server.check_port_free(config.http.host, config.http.port, "HTTP")
        server.check_port_free("0.0.0.0", config.dicom.port, "DICOM")
        orthanc_view, proxy_env, proxy_plan = config, {}, None
        if config.http.tls:  # TLS terminated by nginx in front of a loopback-only Orthanc
            internal = tls_proxy.pick_internal_port(config)
            server.check_port_free("127.0.0.1", internal, "Internal HTTP (http.internal_port)")
            proxy_plan = tls_proxy.plan(config, internal, tls_proxy.new_secret())
            orthanc_view = server.orthanc_facing(config, internal)
            proxy_env = {tls_proxy.SECRET_ENV: proxy_plan.secret}
        # No DicomModalities: Orthanc sends nothing itself (ops/orthanc.template.json).
        rendered = orthanc_config.render(orthanc_view, nodes=[], stable_age=stable_age)
        orthanc_config.write(config, rendered)
        # Asked before Orthanc starts (health tells staff only): no extra Orthanc process
        # runs beside the serving one once it is up.
        version = server.orthanc_version()
        if config.database.shared:
            pgpass = server.write_pgpass(config, db_password)
            proxy_env["PGPASSFILE"] = str(pgpass)
            del db_password
        if proxy_plan is not None:
            proxy = tls_proxy.start(config, proxy_plan)
        dicom_front = _dicom_front(config, orthanc_view, passphrase, proxy_env)
        server.start_dicom_front(dicom_front)
        read_fd = server.passphrase_pipe(passphrase)
        del passphrase
        log = config.home.orthanc_log
        log_offset = log.stat().st_size if log.exists() else 0
        process = server.start_orthanc(
            config,
            {
                "ARCHIVE_UNENCRYPTED_VOLUME": "1" if decision.unencrypted else "0",
                server.PASSPHRASE_FD_ENV: str(read_fd),
                **proxy_env,
            },
            pass_fds=(read_fd,),
        )
        os.close(read_fd)
        read_fd = None
        _write_volume_state(config, decision, allow_unencrypted_volume)
        readiness = server.wait_ready(config, process, timeout=ready_timeout)
        if not readiness.ready:
            server.stop_orthanc(process)
            refusal = server.plugin_refusal(config.home.orthanc_log, since=log_offset)
            if refusal:
                raise server.ServeError(f"the archive plugin refused to start: {refusal}")
            raise server.ServeError(
                "Orthanc did not start; the end of its log "
                f"({config.home.orthanc_log}) says:\n{readiness.log_tail}"
            )
    except (ArchiveError, KeyboardInterrupt) as exc:
        if read_fd is not None:
            os.close(read_fd)
        server.stop_dicom_front(dicom_front)
        if process is not None:
            server.stop_orthanc(process)
        if proxy is not None or (locked and config.http.tls):
            tls_proxy.stop(config, proxy)
        if pgpass is not None:
            pgpass.unlink(missing_ok=True)
        warning = server.release_volume(config, decision)
        if warning:
            typer.echo(f"warning: {warning}", err=True)
        lock.release()
        if isinstance(exc, KeyboardInterrupt):
            fail("stopped before the archive started; nothing was left running.")
        fail(str(exc))

    if config.node > 1 or config.database.shared:
        typer.echo(
            f"Node {config.node}: index on PostgreSQL {config.database.host}:"
            f"{config.database.port}/{config.database.database}, run dir {config.home.run_dir}"
            if config.database.shared
            else f"Node {config.node}",
            err=True,
        )
    typer.echo(
        f"Archive serving: web API {server.base_url(config)}  "
        f"DICOM {config.dicom.aet}@{config.http.host}:{config.dicom.port}  "
        f"(Orthanc {version or '-'})"
    )
    typer.echo(f"Data volume: {_volume_line(decision)}", err=True)
    if proxy is not None:
        typer.echo(
            f"TLS: nginx on {config.http.host}:{config.http.port} -> Orthanc on "
            f"127.0.0.1:{proxy_plan.internal_port} (refuses all but 127.0.0.1)",
            err=True,
        )
    typer.echo("Press Ctrl-C to stop.", err=True)
    while not stop.is_set() and process.poll() is None:
        if proxy is not None and proxy.poll() is not None:
            break
        _keep_dicom_front(dicom_front, stop)
        stop.wait(0.5)
    proxy_died = proxy is not None and proxy.poll() is not None and not stop.is_set()
    crashed = process.poll() is not None and not stop.is_set()
    server.stop_dicom_front(dicom_front)  # stop taking requests first, then Orthanc
    if proxy is not None:
        tls_proxy.stop(config, proxy)
    code = server.stop_orthanc(process)
    if pgpass is not None:
        pgpass.unlink(missing_ok=True)
    warning = server.release_volume(config, decision)
    if warning:
        typer.echo(f"warning: the encrypted volume stayed mounted: {warning}", err=True)
    _volume_state_file(config).unlink(missing_ok=True)
    lock.release()
    if crashed:
        fail(f"Orthanc exited unexpectedly (code {code}); see {config.home.orthanc_log}.")
    if proxy_died:
        fail(
            "The TLS terminator (nginx) exited unexpectedly; Orthanc was stopped. See "
            f"{tls_proxy.error_log(config)}."
        )
    typer.echo("Archive stopped.")


def _dicom_front(config, orthanc_view, passphrase: str, orthanc_env: dict):
    """The DICOM front of this serve (archive/dicom/front.py; Orthanc's own DICOM server
    is off): it forwards to Orthanc's loopback HTTP port with a per-serve secret, which
    Orthanc's HTTP filter gets through `orthanc_env`."""
    from archive.dicom.forward import FRONT_SECRET_ENV

    secret = tls_proxy.new_secret()
    orthanc_env[FRONT_SECRET_ENV] = secret
    url = f"http://127.0.0.1:{orthanc_view.http.port}"
    return server.DicomFront(config, url, secret, passphrase)


def _keep_dicom_front(front, stop: threading.Event) -> None:
    """Restart the DICOM front if it died (audited by the front when it starts again)."""
    if front is None or front.process is None or front.process.poll() is None:
        return
    if stop.is_set():
        return
    front.restarts += 1
    typer.echo(
        f"warning: the DICOM front exited (code {front.process.returncode}); restarting it "
        f"(restart {front.restarts}); see {front.log}",
        err=True,
    )
    try:
        server.start_dicom_front(front)
    except ArchiveError as exc:
        typer.echo(f"warning: {exc}", err=True)


def _node_config(config, node: int, http_port: int | None, dicom_port: int | None):
    """The configuration of one node; node 1 with no port overrides is the home as is."""
    if node == config.node and http_port is None and dicom_port is None:
        return config
    try:
        return for_node(config, node, http_port=http_port, dicom_port=dicom_port)
    except ArchiveError as exc:
        fail(str(exc))


def _volume_line(decision) -> str:
    state = decision.state
    if decision.unencrypted:
        return f"NOT encrypted ({state.detail}), allowed explicitly"
    mounted = " (mounted by this serve)" if decision.mounted_here else ""
    return f"encrypted, {state.kind}{mounted}"


def _volume_state_file(config):
    return config.home.run_dir / "volume.json"


def _write_volume_state(config, decision, allowed_by_flag: bool) -> None:
    """What this serve decided about the volume, for `archive status` (no secrets)."""
    state = {
        **decision.state.as_dict(),
        "unencrypted": decision.unencrypted,
        "allowed_unencrypted_by_flag": allowed_by_flag,
        "mounted_by_serve": decision.mounted_here,
    }
    path = _volume_state_file(config)
    path.write_text(json.dumps(state), encoding="utf-8")
    path.chmod(0o600)


def status(home: HomeOption, json_output: JsonOption = False, node: NodeOption = 1) -> None:
    """Say whether the archive is up, whether the plugin is loaded, versions and counts."""
    config = _node_config(load(home), node, None, None)
    pid = server.HomeLock.holder(config.home.lock_file)
    answer = server.health(config) if pid is not None else None
    report = {
        "home": str(config.home.root),
        "archive_version": __version__,
        "serving": pid is not None,
        "serve_pid": pid,
        "plugin_loaded": server.is_up(answer),
        "orthanc_version": server.orthanc_version(),
        "url": server.base_url(config),
        "tls": config.http.tls,
        "https": _tls_report(config, pid is not None),
        "dicom": f"{config.dicom.aet}:{config.dicom.port}",
        "counts": server.stored_counts(config),
        "volume": config.volume.kind,
        "unencrypted_volume_allowed": config.volume.allow_unencrypted,
        **_volume_report(config, pid is not None),
    }
    if json_output:
        emit_json(report)
        return
    state = "up" if report["plugin_loaded"] else ("starting or unhealthy" if pid else "down")
    typer.echo(f"Archive {state}: {report['home']}")
    typer.echo(f"  archive {__version__}, Orthanc {report['orthanc_version'] or '-'}")
    typer.echo(f"  web API {report['url']}  DICOM {report['dicom']}")
    typer.echo(f"  plugin loaded: {'yes' if report['plugin_loaded'] else 'no'}")
    if report["tls"]:
        https = report["https"]
        typer.echo(
            f"  https: listens on {https['listen']} (nginx TLS terminator"
            + (f", pid {https['pid']}" if https.get("pid") else ", not running")
            + f") -> Orthanc {https.get('internal') or '127.0.0.1 (internal port)'}"
        )
    if report["counts"]:
        counts = report["counts"]
        typer.echo(
            f"  studies {counts['studies']}, series {counts['series']}, "
            f"instances {counts['instances']}"
        )
    typer.echo(
        f"  volume: configured {report['volume']}, now {report['volume_state']['kind']}"
        f" ({'encrypted' if report['volume_encrypted'] else 'NOT encrypted'}"
        f"{', mounted' if report['volume_state']['mounted'] else ''})"
    )
    if report["running_unencrypted"]:
        typer.echo("  WARNING: serving on an unencrypted data directory (allowed explicitly)")


def _tls_report(config, serving: bool) -> dict | None:
    """Where HTTPS listens and what nginx forwards to (no secret), when tls is on."""
    if not config.http.tls:
        return None
    state = tls_proxy.read_state(config) if serving else None
    if state:
        return state
    return {"scheme": "https", "listen": f"{config.http.host}:{config.http.port}", "pid": None}


def _volume_report(config, serving: bool) -> dict:
    """What protects HOME/data now, and what the running serve decided about it."""
    from archive.vault import volume as vol

    state = vol.status(config.home)
    decided = None
    path = _volume_state_file(config)
    if serving and path.is_file():
        try:
            decided = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            decided = None
    return {
        "volume_state": state.as_dict(),
        "volume_encrypted": state.encrypted,
        "running_unencrypted": bool(decided and decided.get("unencrypted")),
        "allowed_unencrypted_by_flag": bool(decided and decided.get("allowed_unencrypted_by_flag")),
        "volume_mounted_by_serve": bool(decided and decided.get("mounted_by_serve")),
    }


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(serve)
    app.command()(status)

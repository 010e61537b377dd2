"""`archive init`, `archive serve` and `archive status`: create, run and inspect a home."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Annotated

import typer

from archive import __version__
from archive.cli.common import HomeOption, JsonOption, emit_json, fail, load
from archive.config import database_password, for_node
from archive.errors import ArchiveError
from archive.serve import orthanc_config, server, tls_proxy
from archive.serve.home import check_home_permissions, init_home

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
    children_started = threading.Event()

    def _on_signal(signum, frame) -> None:  # noqa: ARG001 - signal API
        stop.set()
        if not children_started.is_set():  # nothing started yet (e.g. at the prompt): abort
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    config = _node_config(load(home), node, http_port, dicom_port)
    lock = server.HomeLock(config.home.lock_file)
    audit = _Auditor(config)
    supervisor = server.Supervisor(on_event=lambda event: _on_child_event(config, audit, event))
    pgpass = None
    decision = None
    dicom_front = None
    locked = False  # until then the nginx files in the run dir may be a running serve's
    try:
        server.find_orthanc()  # install problems first: no passphrase asked for nothing
        tls_proxy.find_nginx()
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
        server.check_port_free(config.dicom.host, config.dicom.port, "DICOM")
        # nginx is always the front door: Orthanc's HTTP is loopback-only at an internal
        # port (archive/serve/tls_proxy.py says why).
        internal = tls_proxy.pick_internal_port(config)
        server.check_port_free("127.0.0.1", internal, "Internal HTTP (http.internal_port)")
        proxy_plan = tls_proxy.plan(config, internal, tls_proxy.new_secret())
        orthanc_view = server.orthanc_facing(config, internal)
        bind_env, bind_warnings = server.orthanc_bind_environment(
            config, internal, server.build_bind_shim(config)
        )
        for line in bind_warnings:
            typer.echo(f"warning: {line}", err=True)
        orthanc_env = {
            tls_proxy.SECRET_ENV: proxy_plan.secret,
            "ARCHIVE_UNENCRYPTED_VOLUME": "1" if decision.unencrypted else "0",
            **bind_env,
        }
        # No DicomModalities: Orthanc sends nothing itself (ops/orthanc.template.json);
        # the DICOM front (archive/dicom/front.py) is the archive's only DICOM entry.
        rendered = orthanc_config.render(orthanc_view, nodes=[], stable_age=stable_age)
        orthanc_config.write(config, rendered)
        # Asked before Orthanc starts (health tells staff only): no extra Orthanc process
        # runs beside the serving one once it is up.
        version = server.orthanc_version()
        if config.database.shared:
            pgpass = server.write_pgpass(config, db_password)
            orthanc_env["PGPASSFILE"] = str(pgpass)
            del db_password
        dicom_front = _dicom_front(config, orthanc_view, passphrase, orthanc_env)
        _write_volume_state(config, decision, allow_unencrypted_volume)
        tls_proxy.refused_log(config).unlink(missing_ok=True)

        def launch_orthanc():
            # Every start, first or after a crash, gets the passphrase through a new pipe:
            # serve keeps it in memory while it supervises, never on disk or in argv/env.
            read_fd = server.passphrase_pipe(passphrase)
            log = config.home.orthanc_log
            log_offset = log.stat().st_size if log.exists() else 0
            try:
                process = server.start_orthanc(
                    config,
                    {**orthanc_env, server.PASSPHRASE_FD_ENV: str(read_fd)},
                    pass_fds=(read_fd,),
                )
            finally:
                os.close(read_fd)
            readiness = server.wait_ready(
                config, process, timeout=ready_timeout, cancel=stop.is_set
            )
            if readiness.ready or stop.is_set():
                return process
            server.stop_orthanc(process)
            refusal = server.plugin_refusal(log, since=log_offset)
            if refusal:
                raise server.ServeError(f"the archive plugin refused to start: {refusal}")
            raise server.ServeError(
                f"Orthanc did not start; the end of its log ({log}) says:\n{readiness.log_tail}"
            )

        children_started.set()
        if stop.is_set():
            raise KeyboardInterrupt
        supervisor.start(
            server.Child(
                "nginx",
                launch=lambda: tls_proxy.start(config, proxy_plan),
                halt=lambda process: tls_proxy.stop(config, process),
                front=True,
            )
        )
        supervisor.start(
            server.Child(
                "dicom-front",
                launch=lambda: server.start_dicom_front(dicom_front),
                halt=server.stop_dicom_process,
                front=True,
            )
        )
        supervisor.start(server.Child("orthanc", launch=launch_orthanc, halt=server.stop_orthanc))
        _write_serve_state(config, supervisor, proxy_plan)
    except (ArchiveError, KeyboardInterrupt) as exc:
        supervisor.stop_all()
        if locked:
            tls_proxy.stop(config, None)  # no nginx config (it holds the secret) left behind
            _serve_state_file(config).unlink(missing_ok=True)
        if pgpass is not None:
            pgpass.unlink(missing_ok=True)
        warning = server.release_volume(config, decision)
        if warning:
            typer.echo(f"warning: {warning}", err=True)
        if locked:
            _volume_state_file(config).unlink(missing_ok=True)
        lock.release()
        if isinstance(exc, KeyboardInterrupt):
            fail("stopped before the archive started; nothing was left running.")
        fail(str(exc))

    if not stop.is_set():  # a stop during the start skips the banner, then stops cleanly
        _banner(config, supervisor, proxy_plan, decision, version)
    gave_up = None
    refused_offset = 0
    while not stop.is_set():
        try:
            before = {c.name: c.pid for c in supervisor.children}
            supervisor.poll(stopping=stop.is_set)
            if {c.name: c.pid for c in supervisor.children} != before:
                _write_serve_state(config, supervisor, proxy_plan)
        except server.SupervisorGaveUp as exc:
            gave_up = exc
            break
        refused_offset = _audit_refusals(config, audit, refused_offset)
        stop.wait(0.5)
    supervisor.stop_all()  # the front door first: stop taking requests, then Orthanc
    _audit_refusals(config, audit, refused_offset)
    tls_proxy.refused_log(config).unlink(missing_ok=True)
    _serve_state_file(config).unlink(missing_ok=True)
    if pgpass is not None:
        pgpass.unlink(missing_ok=True)
    warning = server.release_volume(config, decision)
    if warning:
        typer.echo(f"warning: the encrypted volume stayed mounted: {warning}", err=True)
    _volume_state_file(config).unlink(missing_ok=True)
    lock.release()
    if gave_up is not None:
        fail(f"{gave_up} Orthanc's log: {config.home.orthanc_log}.")
    typer.echo("Archive stopped.")


def _banner(config, supervisor, proxy_plan, decision, version) -> None:
    if config.node > 1 or config.database.shared:
        typer.echo(
            f"Node {config.node}: index on PostgreSQL {config.database.host}:"
            f"{config.database.port}/{config.database.database}, run dir {config.home.run_dir}"
            if config.database.shared
            else f"Node {config.node}",
            err=True,
        )
    orthanc = supervisor.children[-1]
    typer.echo(
        f"Archive serving: web API {server.base_url(config)}  "
        f"DICOM {config.dicom.aet}@{config.dicom.host}:{config.dicom.port}  "
        f"(Orthanc {version or '-'})"
    )
    typer.echo(f"Data volume: {_volume_line(decision)}", err=True)
    typer.echo(
        f"{'HTTPS' if proxy_plan.tls else 'HTTP'}: nginx on {proxy_plan.listen_host}:"
        f"{proxy_plan.listen_port} -> Orthanc on 127.0.0.1:{proxy_plan.internal_port} "
        f"(pid {orthanc.pid}; refuses all but 127.0.0.1)",
        err=True,
    )
    typer.echo("Press Ctrl-C to stop.", err=True)


class _Auditor:
    """serve's own audit records (restarts, nginx's refusals): synchronous appends to the
    home's chain, opened on first use (the data volume is mounted by then). A record that
    cannot be written is said on the console: the restart itself must still happen."""

    def __init__(self, config) -> None:
        self.config = config
        self._log = None

    def __call__(self, event) -> None:
        from archive.audit import AuditError, audit_log_for

        try:
            if self._log is None:
                self._log = audit_log_for(self.config.home)
            self._log.append(event)
        except AuditError as exc:
            typer.echo(f"warning: could not write the audit record {event.action}: {exc}", err=True)


def _on_child_event(config, audit, event) -> None:
    """A line on the console and an audit record for every exit, restart and give-up."""
    from archive.audit import AuditEvent

    detail = {
        "child": event.child,
        "reason": event.reason,
        "uptime_s": int(event.uptime),
        "restarts": event.attempt,
        "node": config.node,
    }
    if event.returncode is not None:
        detail["returncode"] = event.returncode
    if event.kind == "exited":
        typer.echo(
            f"warning: {event.child} exited unexpectedly ({event.reason}) after "
            f"{event.uptime:.0f} s; restarting it",
            err=True,
        )
        audit(AuditEvent("serve.child_exit", "failure", actor="system", detail=detail))
    elif event.kind == "restarted":
        typer.echo(f"{event.child} restarted (restart {event.attempt}).", err=True)
        audit(AuditEvent("serve.child_restart", "success", actor="system", detail=detail))
    else:
        audit(AuditEvent("serve.child_gave_up", "failure", actor="system", detail=detail))


def _audit_refusals(config, audit, offset: int) -> int:
    """Audit what nginx refused before Orthanc's filter (malformed URI, body too large)."""
    from archive.audit import AuditEvent

    refusals, offset = tls_proxy.read_refusals(config, offset)
    for refusal in refusals:
        audit(
            AuditEvent(
                "access.http",
                "denied",
                actor="anonymous",
                source=refusal.client,
                detail={
                    "reason": refusal.reason,
                    "status": refusal.status,
                    "refused_by": "nginx",
                },
            )
        )
    return offset


def _serve_state_file(config):
    return config.home.run_dir / "serve.json"


def _write_serve_state(config, supervisor, proxy_plan) -> None:
    """Where this serve listens and which children it runs (no secrets), for status."""
    state = {
        "serve_pid": os.getpid(),
        "node": config.node,
        "http": proxy_plan.public(),
        "dicom": {"aet": config.dicom.aet, "listen": f"{config.dicom.host}:{config.dicom.port}"},
        "children": supervisor.describe(),
    }
    path = _serve_state_file(config)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    tmp.chmod(0o600)
    os.replace(tmp, path)


def _dicom_front(config, orthanc_view, passphrase: str, orthanc_env: dict):
    """The DICOM front of this serve (archive/dicom/front.py; Orthanc's own DICOM server
    is off): it forwards to Orthanc's loopback HTTP port with a per-serve secret, which
    Orthanc's HTTP filter gets through `orthanc_env`."""
    from archive.dicom.forward import FRONT_SECRET_ENV

    secret = tls_proxy.new_secret()
    orthanc_env[FRONT_SECRET_ENV] = secret
    url = f"http://127.0.0.1:{orthanc_view.http.port}"
    return server.DicomFront(config, url, secret, passphrase)


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
    """Say whether the archive is up, whether the plugin is loaded, versions and counts,
    and where it really listens. Exits 1 when it is down or does not answer."""
    config = _node_config(load(home), node, None, None)
    pid = server.HomeLock.holder(config.home.lock_file)
    answer = server.health(config) if pid is not None else None
    serve_state = _read_serve_state(config) if pid is not None else None
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
        **_listen_report(config, serve_state),
    }
    report["up"] = report["plugin_loaded"] and report["counts"] is not None
    if json_output:
        emit_json(report)
        if not report["up"]:
            raise typer.Exit(1)
        return
    state = "up" if report["up"] else ("NOT ANSWERING" if pid else "down")
    typer.echo(f"Archive {state}: {report['home']}")
    typer.echo(f"  archive {__version__}, Orthanc {report['orthanc_version'] or '-'}")
    typer.echo(f"  web API {report['url']}  DICOM {report['dicom']}")
    if report["listening"]:
        typer.echo(
            "  listening: "
            + "; ".join(
                f"{name} {', '.join(addrs) or '-'}" for name, addrs in report["listening"].items()
            )
        )
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
    for name, child in (report["children"] or {}).items():
        if child.get("restarts"):
            typer.echo(
                f"  {name} restarted {child['restarts']} time(s); last exit: {child['last_exit']}"
            )
    typer.echo(
        f"  volume: configured {report['volume']}, now {report['volume_state']['kind']}"
        f" ({'encrypted' if report['volume_encrypted'] else 'NOT encrypted'}"
        f"{', mounted' if report['volume_state']['mounted'] else ''})"
    )
    if report["running_unencrypted"]:
        typer.echo("  WARNING: serving on an unencrypted data directory (allowed explicitly)")
    if pid is None:
        fail(
            f"the archive is not running. Start it with `archive serve --home {config.home.root}`."
        )
    if not report["up"]:
        fail(
            f"`archive serve` (pid {pid}) runs but the archive does not answer at "
            f"{report['url']}. It restarts Orthanc by itself within seconds; if this "
            f"persists, read {config.home.orthanc_log}, then stop serve and start it again."
        )


def _read_serve_state(config) -> dict | None:
    try:
        return json.loads(_serve_state_file(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _listen_report(config, serve_state: dict | None) -> dict:
    """Where the running serve's children really listen (from /proc, by their pids in the
    serve's state file), and what serve configured them with."""
    if not serve_state:
        return {"listening": None, "children": None, "http_listen": None, "dicom_listen": None}
    children = serve_state.get("children") or {}
    listening = {
        name: server.listening_sockets(child["pid"]) if child.get("pid") else []
        for name, child in children.items()
    }
    return {
        "listening": listening,
        "children": children,
        "http_listen": (serve_state.get("http") or {}).get("listen"),
        "dicom_listen": (serve_state.get("dicom") or {}).get("listen"),
    }


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

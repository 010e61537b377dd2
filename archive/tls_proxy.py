"""TLS termination in front of Orthanc (nginx as a child of `archive serve`).

WHY: Debian's Orthanc 1.10.1 segfaults (exit 139) on the first HTTPS request when
SslEnabled is true, so Orthanc never speaks TLS here. With `[http] tls = true`, Orthanc's
HTTP serves 127.0.0.1 only, at an internal port (RemoteAccessAllowed false: 1.10.1 has no
bind address, so the socket is 0.0.0.0 but any other peer gets 401 before any route),
and nginx terminates TLS 1.2+ on http.host:http.port with HOME/keys/https.pem.

The audit log needs the real client address, which Orthanc (seeing only the proxy on
127.0.0.1) cannot know. nginx passes it in CLIENT_IP_HEADER together with a random
per-serve secret in SECRET_HEADER; the plugin believes the address only when the request
comes from 127.0.0.1 and carries that secret (constant-time compare), see
`client_address`. The secret reaches Orthanc through its environment (SECRET_ENV) and
nginx through its 0600 config in HOME/run (0700); it is never printed or logged.

Request and response bodies are streamed, never buffered to nginx's temporary files:
uploaded DICOM is identifiable and must not reach disk in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from archive.access.tls import certificate_path
from archive.config import ArchiveConfig
from archive.errors import ArchiveError

CLIENT_IP_HEADER = "X-Archive-Client-IP"
SECRET_HEADER = "X-Archive-Proxy-Secret"  # noqa: S105 - a header name
SECRET_ENV = "ARCHIVE_PROXY_SECRET"  # noqa: S105 - a variable name
MAX_BODY = "4g"  # a whole study in one multipart upload is still accepted
STATE_NAME = "tls-proxy.json"


class ProxyError(ArchiveError):
    """The TLS terminator could not be configured or started."""


def client_address(ip: str, headers: Mapping[str, str], secret: str | None) -> str:
    """The address to audit: the proxy's header when the request comes from the proxy
    (127.0.0.1 and the right per-serve secret), else `ip` as Orthanc saw it. A header
    forged by anyone else - or a malformed address - is ignored."""
    if not secret or ip != "127.0.0.1":
        return ip
    given = forwarded = None
    secret_name, client_name = SECRET_HEADER.lower(), CLIENT_IP_HEADER.lower()
    for name, value in headers.items():
        lowered = str(name).lower()
        if lowered == secret_name:
            given = str(value)
        elif lowered == client_name:
            forwarded = str(value).strip()
    if given is None or forwarded is None:
        return ip
    if not hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
        return ip
    try:
        return str(ipaddress.ip_address(forwarded))
    except ValueError:
        return ip


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def find_nginx() -> str:
    path = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/bin")
    if not path:
        raise ProxyError(
            "http.tls = true needs nginx as TLS terminator, and it is not installed. Run "
            "`make setup` (it installs Debian's nginx-light)."
        )
    return path


def configured_internal_port(config: ArchiveConfig) -> int | None:
    """http.internal_port from archive.toml, if set (archive.config does not parse it)."""
    try:
        raw = tomllib.loads(config.home.config_file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    value = raw.get("http", {}).get("internal_port")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ProxyError("http.internal_port must be a port number (1-65535) in archive.toml.")
    if value in (config.http.port, config.dicom.port):
        raise ProxyError("http.internal_port must differ from http.port and dicom.port.")
    return value


def pick_internal_port(config: ArchiveConfig) -> int:
    """The configured internal port, or a free loopback port chosen now."""
    configured = configured_internal_port(config)
    if configured is not None:
        return configured
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class ProxyPlan:
    """Where the terminator listens and forwards; `secret` is per serve."""

    listen_host: str
    listen_port: int
    internal_port: int
    certificate: Path
    secret: str

    def public(self) -> dict:
        """For `archive status`: no secret."""
        return {
            "scheme": "https",
            "listen": f"{self.listen_host}:{self.listen_port}",
            "internal": f"127.0.0.1:{self.internal_port}",
            "certificate": str(self.certificate),
            "certificate_sha256": certificate_fingerprint(self.certificate),
        }


def plan(config: ArchiveConfig, internal_port: int, secret: str) -> ProxyPlan:
    cert = certificate_path(config.home)
    if not cert.is_file():
        raise ProxyError(
            f"http.tls = true but there is no certificate at {cert}. Put the school's "
            "certificate and key there (one PEM file), or disable tls."
        )
    host = "127.0.0.1" if config.http.host == "localhost" else config.http.host
    return ProxyPlan(host, config.http.port, internal_port, cert, secret)


def certificate_fingerprint(path: Path) -> str | None:
    """SHA-256 of the first certificate's DER in the PEM file (for pinning)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        return None
    try:
        der = ssl.PEM_cert_to_DER_cert(text[start : stop + len(end)] + "\n")
    except ValueError:  # damaged base64 (binascii.Error): no fingerprint, not a traceback
        return None
    return hashlib.sha256(der).hexdigest()


def _quoted(value: str | Path) -> str:
    text = str(value)
    if any(c in text for c in '"\\;\n\r{}$'):
        raise ProxyError(f"Path {text!r} cannot be used in nginx's configuration.")
    return f'"{text}"'


def render_config(config: ArchiveConfig, proxy: ProxyPlan) -> str:
    """nginx's configuration: foreground, files in HOME/run/nginx, TLS 1.2+, HSTS,
    streamed bodies, plain HTTP on the TLS port redirected to https.

    Nothing a user sends reaches nginx's files: no access log, bodies streamed (never a
    temporary file), and the error log at `crit`, because nginx's `error`/`warn` lines
    quote the request line, whose query string may hold a search a user typed."""
    run = config.home.run_dir
    prefix = run / "nginx"
    temp = {
        name: _quoted(prefix / name)
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    }
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    listen = proxy.listen_host if ":" not in proxy.listen_host else f"[{proxy.listen_host}]"
    return f"""# Generated by `archive serve` for this run; deleted when it stops. Do not edit.
daemon off;
master_process on;
worker_processes 1;
{user}pid {_quoted(run / "nginx.pid")};
error_log {_quoted(run / "nginx-error.log")} crit;
events {{ worker_connections 512; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    server {{
        listen {listen}:{proxy.listen_port} ssl;
        ssl_certificate {_quoted(proxy.certificate)};
        ssl_certificate_key {_quoted(proxy.certificate)};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_prefer_server_ciphers on;
        ssl_session_tickets off;
        # Plain HTTP sent to this TLS port: redirect, never serve it.
        error_page 497 =301 https://$host:$server_port$request_uri;
        add_header Strict-Transport-Security "max-age=31536000" always;
        client_max_body_size {MAX_BODY};
        client_body_buffer_size 1m;
        location / {{
            proxy_pass http://127.0.0.1:{proxy.internal_port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header {CLIENT_IP_HEADER} $remote_addr;
            proxy_set_header {SECRET_HEADER} "{proxy.secret}";
            proxy_set_header X-Forwarded-Proto https;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_max_temp_file_size 0;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}
}}
"""


def config_path(config: ArchiveConfig) -> Path:
    return config.home.run_dir / "nginx.conf"


def state_path(config: ArchiveConfig) -> Path:
    return config.home.run_dir / STATE_NAME


def error_log(config: ArchiveConfig) -> Path:
    return config.home.run_dir / "nginx-error.log"


def write_config(config: ArchiveConfig, proxy: ProxyPlan) -> Path:
    """Write nginx.conf 0600 (it holds the per-serve secret) and its temp directories."""
    prefix = config.home.run_dir / "nginx"
    prefix.mkdir(mode=0o700, exist_ok=True)
    path = config_path(config)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(render_config(config, proxy))
    os.replace(tmp, path)
    return path


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def _listening(host: str, port: int) -> bool:
    target = "127.0.0.1" if host in ("0.0.0.0", "localhost") else host  # noqa: S104
    try:
        with socket.create_connection((target, port), timeout=0.5):
            return True
    except OSError:
        return False


def start(config: ArchiveConfig, proxy: ProxyPlan, timeout: float = 15.0) -> subprocess.Popen:
    """Check and start nginx in the foreground (a child of serve, same process group);
    returns once it listens, else stops it and raises ProxyError with its log's end."""
    nginx = find_nginx()
    conf = write_config(config, proxy)
    prefix = config.home.run_dir / "nginx"
    log = error_log(config)
    base = [nginx, "-p", str(prefix), "-e", str(log), "-c", str(conf)]
    check = subprocess.run(  # noqa: S603 - fixed binary, our own arguments
        [*base, "-t", "-q"], capture_output=True, text=True, check=False, timeout=30
    )
    if check.returncode != 0:
        conf.unlink(missing_ok=True)
        detail = (check.stderr or check.stdout).strip().splitlines()
        raise ProxyError(
            "The TLS terminator (nginx) refused its configuration: "
            f"{detail[-1] if detail else 'no detail'}. Check {proxy.certificate}."
        )
    with open(os.devnull, "rb") as devnull:
        process = subprocess.Popen(  # noqa: S603
            base,
            stdin=devnull,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=str(config.home.run_dir),
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if _listening(proxy.listen_host, proxy.listen_port):
            _write_state(config, proxy, process.pid)
            return process
        time.sleep(0.05)
    stop(config, process)
    raise ProxyError(
        f"The TLS terminator (nginx) did not start on {proxy.listen_host}:"
        f"{proxy.listen_port}; the end of {log} says:\n{_log_tail(log)}"
    )


def _write_state(config: ArchiveConfig, proxy: ProxyPlan, pid: int) -> None:
    path = state_path(config)
    path.write_text(json.dumps({**proxy.public(), "pid": pid}), encoding="utf-8")
    path.chmod(0o600)


def read_state(config: ArchiveConfig) -> dict | None:
    """What the running serve's terminator does (no secret), for `archive status`."""
    try:
        return json.loads(state_path(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stop(config: ArchiveConfig, process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Stop nginx (SIGTERM: fast shutdown, then SIGKILL) and remove its secret-bearing config."""
    if process is not None and process.poll() is None:
        process.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    config_path(config).unlink(missing_ok=True)
    state_path(config).unlink(missing_ok=True)

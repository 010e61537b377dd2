"""nginx in front of Orthanc, always (a child of `archive serve`): the public HTTP port.

WHY: orthanc-python 4.0 reads a whole request body into memory before the HTTP filter
can refuse it (a 300 MB anonymous POST took Orthanc from 90 to 395 MB for good), answers
500 before the filter for a URI that is not UTF-8, and Orthanc 1.10.1 has no bind
address. And Debian's Orthanc 1.10.1 segfaults (exit 139) on the first HTTPS request
when SslEnabled is true, so Orthanc never speaks TLS here. So Orthanc's HTTP serves
127.0.0.1 only, at an internal port (RemoteAccessAllowed false), and nginx listens on
http.host:http.port - plain HTTP, or TLS 1.2+ with HOME/keys/https.pem when
`[http] tls = true` - bounding bodies per location and refusing malformed URIs before
Orthanc reads a byte (see `render_config`).

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
            "The archive needs nginx in front of Orthanc, and it is not installed. Run "
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
    if value is None or config.node > 1:  # the configured one is node 1's
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
    """Where the front door listens and forwards; `secret` is per serve."""

    listen_host: str
    listen_port: int
    internal_port: int
    certificate: Path
    secret: str
    tls: bool = True
    max_upload_mb: int = 512

    def public(self) -> dict:
        """For `archive status`: no secret."""
        described = {
            "scheme": "https" if self.tls else "http",
            "listen": f"{self.listen_host}:{self.listen_port}",
            "internal": f"127.0.0.1:{self.internal_port}",
            "max_upload_mb": self.max_upload_mb,
        }
        if self.tls:
            described["certificate"] = str(self.certificate)
            described["certificate_sha256"] = certificate_fingerprint(self.certificate)
        return described


def plan(config: ArchiveConfig, internal_port: int, secret: str) -> ProxyPlan:
    cert = certificate_path(config.home)
    if config.http.tls and not cert.is_file():
        raise ProxyError(
            f"http.tls = true but there is no certificate at {cert}. Put the school's "
            "certificate and key there (one PEM file), or disable tls."
        )
    host = "127.0.0.1" if config.http.host == "localhost" else config.http.host
    return ProxyPlan(
        host,
        config.http.port,
        internal_port,
        cert,
        secret,
        tls=config.http.tls,
        max_upload_mb=config.http.max_upload_mb,
    )


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


ANONYMOUS_BODY_LIMIT = "64k"  # sign-in form, health, stylesheet: nothing bigger needed
# Routes anonymous callers may reach (policies/access/routes.toml [anonymous]): their own
# nginx locations with the small body limit and no authentication check.
ANONYMOUS_EXACT = ("/teaching/ui/login", "/teaching/health")
ANONYMOUS_PREFIX = ("/teaching/ui/static/",)
# The cheap authenticated route nginx asks (auth_request, headers only, no body) before
# it reads a body larger than the anonymous limit: every role may GET it
# (policies/access/routes.toml). Orthanc's filter answers 403 for a caller it refuses;
# a caller it lets in gets the route's answer, or 404 while no plugin serves it: both
# mean "authenticated" to nginx.
AUTH_CHECK_ROUTE = "/teaching/me"
REFUSED_LOG = "nginx-refused.log"
MALFORMED_URI_ANSWER = (
    "Malformed URI: it must be valid UTF-8 once percent-decoded. Fix the link and try again."
)

# UTF-8 (RFC 3629) as byte ranges: a URI whose bytes, once percent-decoded, are not
# valid UTF-8 is refused by nginx (orthanc-python 4.0 answers 500 before the filter).
_UTF8_SEQUENCES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0xC2, 0xDF), (0x80, 0xBF)),
    ((0xE0, 0xE0), (0xA0, 0xBF), (0x80, 0xBF)),
    ((0xE1, 0xEC), (0x80, 0xBF), (0x80, 0xBF)),
    ((0xED, 0xED), (0x80, 0x9F), (0x80, 0xBF)),
    ((0xEE, 0xEF), (0x80, 0xBF), (0x80, 0xBF)),
    ((0xF0, 0xF0), (0x90, 0xBF), (0x80, 0xBF), (0x80, 0xBF)),
    ((0xF1, 0xF3), (0x80, 0xBF), (0x80, 0xBF), (0x80, 0xBF)),
    ((0xF4, 0xF4), (0x80, 0x8F), (0x80, 0xBF), (0x80, 0xBF)),
)


def _nibbles(lo: int, hi: int) -> str:
    digits = "0123456789ABCDEF"
    chars = set()
    for value in range(lo, hi + 1):
        chars.add(digits[value])
        chars.add(digits[value].lower())
    return "[" + "".join(sorted(chars)) + "]"


def _byte(lo: int, hi: int) -> str:
    """One byte in [lo, hi], raw or percent-encoded (%hh, either case)."""
    encoded = []
    for high in range(lo >> 4, (hi >> 4) + 1):
        low_lo = lo & 0xF if high == lo >> 4 else 0
        low_hi = hi & 0xF if high == hi >> 4 else 0xF
        encoded.append(f"%{_nibbles(high, high)}{_nibbles(low_lo, low_hi)}")
    return f"(?:[\\x{lo:02X}-\\x{hi:02X}]|{'|'.join(encoded)})"


def valid_uri_pattern() -> str:
    """A regex (PCRE and Python `re`, bytes) matching a raw request URI that is valid
    UTF-8 after percent-decoding, with every '%' starting a %hh escape. Possessive, so
    nginx's PCRE never backtracks on a long URI."""
    ascii_literal = r"[\x00-\x24\x26-\x7F]"  # any ASCII but '%'
    ascii_encoded = "%[0-7][0-9A-Fa-f]"
    multi = ["".join(_byte(lo, hi) for lo, hi in sequence) for sequence in _UTF8_SEQUENCES]
    return f"^(?:{ascii_literal}|{ascii_encoded}|{'|'.join(multi)})*+$"


def _small_length_pattern(limit: int = 65535) -> str:
    """A Content-Length no larger than `limit` (65535): 0-9999, 10000-59999, ..."""
    assert limit == 65535
    return r"^(?:[0-9]{1,4}|[0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"


def render_config(config: ArchiveConfig, proxy: ProxyPlan) -> str:
    """nginx's configuration: foreground, files in HOME/run/nginx, plain HTTP or TLS 1.2+
    (with HSTS, plain HTTP on the TLS port redirected to https), streamed bodies.

    Request bodies are bounded per location before Orthanc sees a byte (orthanc-python
    4.0 buffers a whole body before the filter answers): the anonymous routes get 64 KB;
    every other route may take up to http.max_upload_mb, but a body above 64 KB (or of
    unknown length) is let through only after nginx has asked Orthanc's filter, with the
    request's headers and no body (auth_request to AUTH_CHECK_ROUTE), whether the caller
    is an authenticated user. A URI that is not valid UTF-8 once decoded, or has a stray
    '%', is refused with 400 here (orthanc-python 4.0 answers 500 before the filter).
    nginx's own refusals (400, 413, 414, 494) go to REFUSED_LOG - time, client address,
    status, no URI - which `archive serve` follows and audits as access.http denied.

    Nothing a user sends reaches nginx's files: no access log but that one, bodies held
    in memory and never in a temporary file (each location's client_body_buffer_size is
    its client_max_body_size, so no accepted body is ever spooled; the memory is taken
    only for a body the location admits, i.e. above 64 KB only after the authentication
    check), and the
    error log at `crit`, because nginx's `error`/`warn` lines quote the request line,
    whose query string may hold a search a user typed."""
    run = config.home.run_dir
    prefix = run / "nginx"
    temp = {
        name: _quoted(prefix / name)
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    }
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    listen = proxy.listen_host if ":" not in proxy.listen_host else f"[{proxy.listen_host}]"
    upstream = f"http://127.0.0.1:{proxy.internal_port}"
    scheme = "https" if proxy.tls else "http"
    headers = f"""            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header {CLIENT_IP_HEADER} $remote_addr;
            proxy_set_header {SECRET_HEADER} "{proxy.secret}";
            proxy_set_header X-Forwarded-Proto {scheme};"""
    streamed = f"""{headers}
            # Buffered (in memory, see above): with proxy_request_buffering off, a request
            # whose body Orthanc refused unread (a filter 403) made nginx drop the client's
            # keep-alive connection under the next request (measured: 21 of 1000 pairs).
            proxy_request_buffering on;
            proxy_buffering off;
            proxy_max_temp_file_size 0;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;"""
    anonymous = "".join(
        f"""        location = {route} {{
            client_max_body_size {ANONYMOUS_BODY_LIMIT};
            proxy_pass {upstream};
{streamed}
        }}
"""
        for route in ANONYMOUS_EXACT
    ) + "".join(
        f"""        location ^~ {route} {{
            client_max_body_size {ANONYMOUS_BODY_LIMIT};
            proxy_pass {upstream};
{streamed}
        }}
"""
        for route in ANONYMOUS_PREFIX
    )
    tls = (
        f"""        ssl_certificate {_quoted(proxy.certificate)};
        ssl_certificate_key {_quoted(proxy.certificate)};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_prefer_server_ciphers on;
        ssl_session_tickets off;
        # Plain HTTP sent to this TLS port: redirect, never serve it.
        error_page 497 =301 https://$host:$server_port$request_uri;
        add_header Strict-Transport-Security "max-age=31536000" always;
"""
        if proxy.tls
        else ""
    )
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
    client_body_buffer_size 64k;
    client_body_in_file_only off;
    map $request_uri $archive_bad_uri {{
        default 1;
        "~{valid_uri_pattern()}" 0;
    }}
    map "$http_content_length:$http_transfer_encoding" $archive_small_body {{
        default 0;
        "~^:$" 1;
        "~{_small_length_pattern()[:-1]}:$" 1;
    }}
    # nginx's own refusals (no upstream was asked): audited by `archive serve`.
    map "$archive_bad_uri:$status:$upstream_addr" $archive_refused {{
        default 0;
        "~^1:" 1;
        "~^0:(400|413|414|494):$" 1;
    }}
    log_format archive_refused "$msec $remote_addr $status $archive_bad_uri";
    server {{
        listen {listen}:{proxy.listen_port}{" ssl" if proxy.tls else ""};
{tls}        access_log {_quoted(run / REFUSED_LOG)} archive_refused if=$archive_refused;
        if ($archive_bad_uri) {{
            return 400 "{MALFORMED_URI_ANSWER}\\n";
        }}
{anonymous}        location = /_archive_auth {{
            internal;
            client_max_body_size 0;  # it never reads the body; the caller's location bounds it
            if ($archive_small_body) {{
                return 204;
            }}
            proxy_pass {upstream}{AUTH_CHECK_ROUTE};
            # The filter runs before Orthanc routes: 404 means it let the caller in.
            proxy_intercept_errors on;
            error_page 404 = @archive_authenticated;
            proxy_method GET;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Transfer-Encoding "";
{headers}
        }}
        location @archive_authenticated {{
            return 204;
        }}
        location / {{
            client_max_body_size {proxy.max_upload_mb}m;
            client_body_buffer_size {proxy.max_upload_mb}m;
            auth_request /_archive_auth;
            proxy_pass {upstream};
{streamed}
        }}
    }}
}}
"""


_REFUSAL_REASONS = {
    400: "malformed request",
    413: "request body too large",
    414: "URI too long",
    494: "request headers too large",
}


@dataclass(frozen=True)
class Refusal:
    """One request nginx refused before Orthanc's filter saw it (from REFUSED_LOG)."""

    client: str
    status: int
    reason: str


def refused_log(config: ArchiveConfig) -> Path:
    return config.home.run_dir / REFUSED_LOG


def read_refusals(config: ArchiveConfig, offset: int) -> tuple[list[Refusal], int]:
    """The refusals nginx logged from byte `offset` on (whole lines only), and the offset
    to read from next time. A line that does not parse is still a refusal (reason
    "unreadable log line"), so nothing nginx refused goes unaudited."""
    path = refused_log(config)
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    found = []
    for raw in data[: end + 1].splitlines():
        parts = raw.decode("ascii", "replace").split()
        try:
            client = str(ipaddress.ip_address(parts[1]))
            status, bad_uri = int(parts[2]), parts[3] == "1"
        except (IndexError, ValueError):
            found.append(Refusal("unknown", 0, "unreadable log line"))
            continue
        reason = "malformed URI" if bad_uri else _REFUSAL_REASONS.get(status, "refused")
        found.append(Refusal(client, status, reason))
    return found, offset + end + 1


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

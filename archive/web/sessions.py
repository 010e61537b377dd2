"""Browser sessions for the web interface, kept server-side in `web_sessions`.

The cookie carries a random id (256 bits); the table keeps only its SHA-256, so a copy
of the database does not hand out live sessions. Each session has an absolute expiry
and an idle timeout, and its own CSRF token (compared in constant time on every POST).
The HTTP filter calls `principal_for_cookie` for /teaching/ui routes only: roles,
training and account state are re-read from the access store on every request, so a
disabled account or lapsed training takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from http.cookies import CookieError, SimpleCookie

from archive.access import AccessStore, Principal
from archive.db import migrate

COOKIE = "archive_session"
COOKIE_PATH = "/teaching/ui"
UI_PREFIX = "/teaching/ui/"
ABSOLUTE_LIFETIME = timedelta(hours=8)
IDLE_TIMEOUT = timedelta(minutes=30)

SCHEMA = [
    """
    CREATE TABLE web_sessions (
        id_sha256 TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX web_sessions_user ON web_sessions (user);
    """,
]


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    created_at: datetime
    expires_at: datetime


class SessionStore:
    """Create, look up (sliding the idle timeout) and end sessions."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        migrate(conn, "web", SCHEMA)

    def create(self, user: str, now: datetime) -> tuple[str, Session]:
        """A new session for `user`; returns (cookie value, session). Also sweeps the
        expired rows so the table does not grow."""
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = now + ABSOLUTE_LIFETIME
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(
                "DELETE FROM web_sessions WHERE expires_at <= ? OR last_seen <= ?",
                (now.isoformat(), (now - IDLE_TIMEOUT).isoformat()),
            )
            self.conn.execute(
                "INSERT INTO web_sessions VALUES (?, ?, ?, ?, ?, ?)",
                (_hash(session_id), user, csrf, now.isoformat(), now.isoformat(),
                 expires.isoformat()),
            )  # fmt: skip
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return session_id, Session(user, csrf, now, expires)

    def lookup(self, session_id: str | None, now: datetime) -> Session | None:
        """The live session for this cookie value, or None (unknown, expired, idle)."""
        if not session_id or len(session_id) > 128:
            return None
        key = _hash(session_id)
        row = self.conn.execute(
            "SELECT user, csrf, created_at, last_seen, expires_at FROM web_sessions"
            " WHERE id_sha256 = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        expires = datetime.fromisoformat(row["expires_at"])
        last_seen = datetime.fromisoformat(row["last_seen"])
        if now >= expires or now - last_seen >= IDLE_TIMEOUT:
            self.conn.execute("DELETE FROM web_sessions WHERE id_sha256 = ?", (key,))
            return None
        if now - last_seen > timedelta(seconds=30):  # do not write on every request
            self.conn.execute(
                "UPDATE web_sessions SET last_seen = ? WHERE id_sha256 = ?", (now.isoformat(), key)
            )
        return Session(row["user"], row["csrf"], datetime.fromisoformat(row["created_at"]), expires)

    def end(self, session_id: str | None) -> None:
        if session_id:
            self.conn.execute("DELETE FROM web_sessions WHERE id_sha256 = ?", (_hash(session_id),))

    def end_all_for(self, user: str) -> int:
        return self.conn.execute("DELETE FROM web_sessions WHERE user = ?", (user,)).rowcount


def check_csrf(session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf.encode(), str(token).encode())


def session_id_from(cookie_header: str | None) -> str | None:
    """Our cookie's value from a Cookie header (None if absent or unparsable)."""
    if not cookie_header or len(cookie_header) > 8192:
        return None
    jar = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def cookie_header_of(headers: dict) -> str | None:
    value = headers.get("cookie")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "cookie"), None)
    return value


def set_cookie(session_id: str, secure: bool) -> str:
    """The Set-Cookie value: HttpOnly, SameSite=Strict, Path=/teaching/ui, Secure on TLS."""
    flags = f"{COOKIE}={session_id}; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict"
    flags += f"; Max-Age={int(ABSOLUTE_LIFETIME.total_seconds())}"
    return flags + ("; Secure" if secure else "")


def clear_cookie(secure: bool) -> str:
    flags = f"{COOKIE}=; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age=0"
    return flags + ("; Secure" if secure else "")


def principal_of_session(store: AccessStore, session: Session, now: datetime) -> Principal | None:
    """The session user's current Principal; None if the account is gone, disabled or
    expired (fail closed)."""
    user = store.get_user(session.user)
    if user is None or user.disabled:
        return None
    if user.account_expires is not None and now >= user.account_expires:
        return None
    return replace(store.local_principal(user.name, now), method="session")


def principal_for_cookie(
    store: AccessStore, cookie_header: str | None, now: datetime
) -> Principal | None:
    """For the HTTP filter: the Principal of a live web session cookie, else None."""
    session = SessionStore(store.conn).lookup(session_id_from(cookie_header), now)
    if session is None:
        return None
    return principal_of_session(store, session, now)

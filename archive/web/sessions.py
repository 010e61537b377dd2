"""Browser sessions for the web interface, kept server-side in `web_sessions`.

The cookie carries a random id (256 bits); the table keeps only its SHA-256, so a copy
of the database does not hand out live sessions. Each session has an absolute expiry
and an idle timeout, and its own CSRF token (compared in constant time on every POST).
The HTTP filter calls `principal_for_cookie` for /teaching/ui routes only: roles,
training and account state are re-read from the access store on every request, so a
disabled account or lapsed training takes effect at once.

A session is bound to the account's *session epoch* (access_users.session_epoch) at the
moment of sign-in, and remembers whether the user was trained then. Every account change
that must end sessions (password reset, disable and enable, role change, expiry, training
withdrawn; archive/access/accounts.py) bumps the epoch in the same transaction, so the
session dies on its next request and stays dead whatever happens to the account later:
re-enabling an account does not revive it. Training that lapses by the calendar ends a
session made while trained. We chose the epoch over deleting rows because it is checked
where the session is used (every request, every node, also for a change made by the CLI
on another machine or restored from a backup) and cannot be forgotten by one code path;
dead rows are deleted when next seen.

The sign-in form is CSRF-protected before any session exists: GET /login sets a random
pre-session cookie (`archive_login`, HttpOnly, SameSite=Strict, Path=/teaching/ui/login)
and puts into the form a token that is an HMAC of that cookie and the time under a
random key kept in the archive database (`web_secrets`); POST /login needs both, and the
token expires after LOGIN_FORM_LIFETIME.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from http.cookies import CookieError, SimpleCookie
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    delete,
    insert,
    or_,
    select,
    update,
)

from archive.access import AccessStore, Principal
from archive.db import add_columns, create_tables, dialect_insert, migrate

COOKIE = "archive_session"
COOKIE_PATH = "/teaching/ui"
UI_PREFIX = "/teaching/ui/"
ABSOLUTE_LIFETIME = timedelta(hours=8)
IDLE_TIMEOUT = timedelta(minutes=30)
LOGIN_COOKIE = "archive_login"
LOGIN_COOKIE_PATH = "/teaching/ui/login"
LOGIN_FORM_LIFETIME = timedelta(hours=2)
_NONCE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")

metadata = MetaData()
Int = BigInteger().with_variant(Integer(), "sqlite")
sessions = Table(
    "web_sessions",
    metadata,
    Column("id_sha256", Text, primary_key=True),
    Column("user", Text, nullable=False),
    Column("csrf", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("last_seen", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("epoch", Int, nullable=False, server_default="-1"),  # step 2
    Column("trained", Int, nullable=False, server_default="0"),  # step 2
)
Index("web_sessions_user", sessions.c.user)
web_secrets = Table(
    "web_secrets",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)


def _end_every_session(conn: Any) -> None:
    conn.execute(delete(sessions))


# Homes made before issue 27 ran these steps as SQL scripts; step 2 adds its columns
# only where step 1 made the table without them.
SCHEMA: list[Any] = [
    create_tables(metadata, [sessions]),
    # Step 2 (issue #20): sessions carry the account's session epoch and whether the user
    # was trained at sign-in; sessions from before cannot be checked, so they end (sign
    # in again). The sign-in form's CSRF key.
    (
        _end_every_session,
        add_columns(sessions, ["epoch", "trained"]),
        create_tables(metadata, [web_secrets]),
    ),
]


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    created_at: datetime
    expires_at: datetime
    epoch: int = -1  # the account's session epoch at sign-in
    trained: bool = False  # trained at sign-in: a lapse since ends the session


class SessionStore:
    """Create, look up (sliding the idle timeout) and end sessions."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        migrate(conn, "web", SCHEMA)

    def create(
        self, user: str, now: datetime, epoch: int = -1, trained: bool = False
    ) -> tuple[str, Session]:
        """A new session for `user` under the account's session `epoch` (read before
        the password was checked); returns (cookie value, session). Also sweeps the
        expired rows so the table does not grow."""
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = now + ABSOLUTE_LIFETIME
        with self.conn.write():
            self.conn.execute(
                delete(sessions).where(
                    or_(
                        sessions.c.expires_at <= now.isoformat(),
                        sessions.c.last_seen <= (now - IDLE_TIMEOUT).isoformat(),
                    )
                )
            )
            self.conn.execute(
                insert(sessions).values(
                    id_sha256=_hash(session_id), user=user, csrf=csrf,
                    created_at=now.isoformat(), last_seen=now.isoformat(),
                    expires_at=expires.isoformat(), epoch=epoch, trained=int(trained),
                )
            )  # fmt: skip
        return session_id, Session(user, csrf, now, expires, epoch, trained)

    def lookup(self, session_id: str | None, now: datetime) -> Session | None:
        """The live session for this cookie value, or None (unknown, expired, idle)."""
        if not session_id or len(session_id) > 128:
            return None
        key = _hash(session_id)
        c = sessions.c
        row = self.conn.execute(
            select(
                c.user, c.csrf, c.created_at, c.last_seen, c.expires_at, c.epoch, c.trained
            ).where(c.id_sha256 == key)
        ).fetchone()
        if row is None:
            return None
        expires = datetime.fromisoformat(row["expires_at"])
        last_seen = datetime.fromisoformat(row["last_seen"])
        if now >= expires or now - last_seen >= IDLE_TIMEOUT:
            self.conn.execute(delete(sessions).where(c.id_sha256 == key))
            return None
        if now - last_seen > timedelta(seconds=30):  # do not write on every request
            self.conn.execute(
                update(sessions).where(c.id_sha256 == key).values(last_seen=now.isoformat())
            )
        return Session(row["user"], row["csrf"], datetime.fromisoformat(row["created_at"]),
                       expires, int(row["epoch"]), bool(row["trained"]))  # fmt: skip

    def end(self, session_id: str | None) -> None:
        if session_id:
            self.conn.execute(delete(sessions).where(sessions.c.id_sha256 == _hash(session_id)))

    def end_all_for(self, user: str) -> int:
        """Delete every session row of `user` (hygiene: the account's session epoch is
        what ends them; see the module doc)."""
        return self.conn.execute(delete(sessions).where(sessions.c.user == user)).rowcount

    # -- the sign-in form's CSRF token ------------------------------------------------
    def _login_key(self) -> bytes:
        login = select(web_secrets.c.value).where(web_secrets.c.name == "login")
        value = self.conn.execute(login).scalar()
        if value is None:
            self.conn.execute(
                dialect_insert(self.conn, web_secrets)
                .values(name="login", value=secrets.token_hex(32))
                .on_conflict_do_nothing()
            )
            value = self.conn.execute(login).scalar()
        return bytes.fromhex(value)

    def login_token(self, nonce: str, now: datetime) -> str:
        """The sign-in form's token for the pre-session cookie `nonce`, issued `now`."""
        stamp = str(int(now.timestamp()))
        mac = hmac.new(self._login_key(), f"login\0{nonce}\0{stamp}".encode(), hashlib.sha256)
        return f"{stamp}.{mac.hexdigest()}"

    def check_login_token(self, nonce: str | None, token: str | None, now: datetime) -> bool:
        """The form's token matches this browser's pre-session cookie and is fresh."""
        if not nonce or not _NONCE.match(nonce) or not token or len(token) > 200:
            return False
        stamp, _, mac = str(token).partition(".")
        if not stamp.isdigit():
            return False
        issued = datetime.fromtimestamp(int(stamp), tz=now.tzinfo)
        if not timedelta(minutes=-5) <= now - issued <= LOGIN_FORM_LIFETIME:
            return False
        expected = self.login_token(nonce, issued).partition(".")[2]
        return hmac.compare_digest(expected.encode(), mac.encode())


def new_login_nonce() -> str:
    return secrets.token_urlsafe(32)


def valid_nonce(nonce: str | None) -> bool:
    return bool(nonce) and bool(_NONCE.match(str(nonce)))


def set_login_cookie(nonce: str, secure: bool) -> str:
    """The pre-session cookie of the sign-in form: only ever sent back to /login."""
    flags = f"{LOGIN_COOKIE}={nonce}; Path={LOGIN_COOKIE_PATH}; HttpOnly; SameSite=Strict"
    flags += f"; Max-Age={int(LOGIN_FORM_LIFETIME.total_seconds())}"
    return flags + ("; Secure" if secure else "")


def clear_login_cookie(secure: bool) -> str:
    flags = f"{LOGIN_COOKIE}=; Path={LOGIN_COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age=0"
    return flags + ("; Secure" if secure else "")


def check_csrf(session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf.encode(), str(token).encode())


def session_id_from(cookie_header: str | None, name: str = COOKIE) -> str | None:
    """Our cookie's value from a Cookie header (None if absent or unparsable)."""
    if not cookie_header or len(cookie_header) > 8192:
        return None
    jar = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(name)
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
    expired, if the account changed since sign-in (session epoch), or if the user was
    trained at sign-in and no longer is (fail closed). The caller ends a dead session."""
    user = store.get_user(session.user)
    if user is None or user.disabled:
        return None
    if user.account_expires is not None and now >= user.account_expires:
        return None
    epoch = store.session_epoch(user.name)
    if epoch is None or session.epoch < 0 or epoch != session.epoch:
        return None
    principal = replace(store.local_principal(user.name, now), method="session")
    if session.trained and not principal.trained:
        return None  # training lapsed since sign-in
    return principal


def principal_for_cookie(
    store: AccessStore, cookie_header: str | None, now: datetime
) -> Principal | None:
    """For the HTTP filter: the Principal of a live web session cookie, else None (a
    session that has died is deleted)."""
    sessions = SessionStore(store.conn)
    sid = session_id_from(cookie_header)
    session = sessions.lookup(sid, now)
    if session is None:
        return None
    principal = principal_of_session(store, session, now)
    if principal is None:
        sessions.end(sid)
    return principal

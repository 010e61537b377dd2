"""Users, roles, training, applications, passwords, API tokens and DICOM nodes.

Everything the filter needs to authenticate a request lives here, in the archive DB
(tables access_*). Secrets are never stored: passwords as argon2id hashes, API tokens
as SHA-256 of the token (they carry 256 random bits, so a slow hash adds nothing).
Secret comparisons use hmac.compare_digest; an unknown user still pays one argon2
verification so that response time does not reveal which names exist.

Failed sign-ins never lock an account: given the client's address, `authenticate_*`
consult a per-(account, address) and per-address backoff (`throttle.Throttle`) before
checking anything, and count failures into it. Every change that must end a user's web
sessions bumps the account's `session_epoch` in the same transaction (`_end_sessions`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from archive.access.policy import ROLES, AccountPolicy
from archive.access.principal import AuthFailure, Principal
from archive.access.schema import migrate_access
from archive.access.throttle import Throttle, ThrottlePolicy
from archive.config import ArchiveConfig
from archive.errors import ArchiveError

_USER_NAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
_TOKEN = re.compile(r"^ta1_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_AET = re.compile(r"^[\x21-\x5b\x5d-\x7e][\x20-\x5b\x5d-\x7e]{0,15}$")
APPROVER_ROLES = frozenset({"personnel", "head_of_school"})


class AccessError(ArchiveError):
    """An account operation was refused; the message says why and what to do."""


@dataclass(frozen=True)
class TrainingRecord:
    familiarisation: bool
    suite_use: bool
    trained_on: date
    expires_on: date
    recorded_by: str
    policy_version: int

    def valid_on(self, day: date) -> bool:
        return self.familiarisation and self.suite_use and self.trained_on <= day < self.expires_on


@dataclass(frozen=True)
class Application:
    speciality: str
    approved_by: str
    approved_at: str
    note: str


@dataclass(frozen=True)
class User:
    name: str
    roles: tuple[str, ...]
    disabled: bool
    account_expires: datetime | None
    created_at: str
    created_by: str
    locked_until: datetime | None
    training: TrainingRecord | None
    applications: tuple[Application, ...]

    def as_dict(self, now: datetime | None = None) -> dict[str, object]:
        now = now or datetime.now(UTC)
        t = self.training
        return {
            "name": self.name,
            "roles": list(self.roles),
            "disabled": self.disabled,
            "account_expires": self.account_expires.isoformat() if self.account_expires else None,
            "account_expired": bool(self.account_expires and now >= self.account_expires),
            "locked_until": self.locked_until.isoformat()
            if self.locked_until and self.locked_until > now
            else None,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "training": None
            if t is None
            else {
                "familiarisation": t.familiarisation,
                "suite_use": t.suite_use,
                "trained_on": t.trained_on.isoformat(),
                "expires_on": t.expires_on.isoformat(),
                "recorded_by": t.recorded_by,
                "policy_version": t.policy_version,
            },
            "trained": bool(t and t.valid_on(now.date())),
            "applications": [a.__dict__ for a in self.applications],
        }


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    user: str
    label: str
    created_at: str
    expires_at: str
    revoked_at: str | None
    last_used_at: str | None

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DicomNode:
    name: str
    aet: str
    host: str
    port: int
    may_store: bool
    may_query: bool


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("datetimes given to the access store must be timezone-aware")
    return moment.astimezone(UTC).isoformat()


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def normalise_host(host: str) -> str:
    """Compare hosts as Orthanc reports them: IPv4-mapped IPv6 becomes plain IPv4."""
    host = host.strip().lower()
    return host[7:] if host.startswith("::ffff:") and "." in host else host


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not _USER_NAME.match(name) or re.search(r"\d{6}", name):
        raise AccessError(
            f"user name {name!r} must be 2-32 characters a-z, 0-9, '.', '_' or '-', starting "
            "with a letter (no long numbers such as staff or NHS numbers)."
        )
    return name


class AccessStore:
    """The access room's data and authentication, over one archive DB connection.

    `hasher` is injectable so tests can use cheap argon2 parameters; production uses
    argon2-cffi's default (argon2id, RFC 9106 low-memory profile).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        policy: AccountPolicy | None = None,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.conn = conn
        self.policy = policy or AccountPolicy()
        self.hasher = hasher or PasswordHasher()
        migrate_access(conn)
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        self._cache_key = secrets.token_bytes(32)
        self._cache: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self.watch: ChangeWatch | None = None
        self._principals: dict[str, tuple[bytes, int, date, datetime | None, Principal]] = {}
        p = self.policy
        self.throttle = Throttle(
            ThrottlePolicy(
                free_per_account_address=p.throttle_free_per_account_address,
                free_per_address=p.throttle_free_per_address,
                initial_delay=float(p.throttle_initial_delay_seconds),
                max_delay=float(p.throttle_max_delay_seconds),
                forget_after=60.0 * p.throttle_forget_after_minutes,
                account_alert_failures=p.throttle_account_alert_failures,
            )
        )

    def bind(self, conn: sqlite3.Connection) -> AccessStore:
        """The same store on another connection (one per thread), sharing the verified-
        credential cache, its key, the dummy hash and the write lock.

        The Orthanc plugin keeps one store per thread (sqlite connections are per thread)
        but one credential cache for all, so a user pays one argon2id verification per
        `credential_cache_seconds`, not one per HTTP thread.
        """
        other = object.__new__(AccessStore)
        other.__dict__.update(self.__dict__)
        other.conn = conn
        return other

    # -- transactions -------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            finally:
                self._principals.clear()  # our own writes take effect at once

    # -- sessions -----------------------------------------------------------------

    @staticmethod
    def _end_sessions(c: sqlite3.Connection, name: str) -> None:
        """Bump the account's session epoch (inside the caller's transaction): every web
        session made before this change is dead, and stays dead whatever comes next."""
        c.execute(
            "UPDATE access_users SET session_epoch = session_epoch + 1 WHERE name = ?", (name,)
        )

    def session_epoch(self, name: str) -> int | None:
        """The account's session epoch (None for an unknown user)."""
        row = self.conn.execute(
            "SELECT session_epoch FROM access_users WHERE name = ?", (name,)
        ).fetchone()
        return int(row[0]) if row else None

    def end_sessions(self, name: str) -> None:
        """End every web session of `name` now (e.g. a personnel 'sign out everywhere')."""
        self._require(name)
        with self._tx() as c:
            self._end_sessions(c, name)

    # -- users --------------------------------------------------------------------

    def _check_password(self, password: str) -> None:
        if not isinstance(password, str) or len(password) < self.policy.password_min_length:
            raise AccessError(
                f"passwords must have at least {self.policy.password_min_length} characters."
            )

    def _check_roles(self, roles: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise AccessError(f"unknown role(s) {sorted(unknown)}; known: {', '.join(ROLES)}.")
        return tuple(sorted(set(roles)))

    def add_user(
        self,
        name: str,
        password: str,
        roles: tuple[str, ...] | list[str],
        now: datetime,
        by: str,
        account_expires: datetime | None = None,
    ) -> User:
        """Create a named user. `other_speciality` is granted only by approve_application."""
        check_user_name(name)
        self._check_password(password)
        roles = self._check_roles(roles)
        if "other_speciality" in roles:
            raise AccessError(
                "other_speciality is granted only by an approved application: "
                "archive users approve NAME --approver PERSON --speciality S."
            )
        hashed = self.hasher.hash(password)
        with self._tx() as c:
            if c.execute("SELECT 1 FROM access_users WHERE name = ?", (name,)).fetchone():
                raise AccessError(f"user {name} already exists; see archive users show {name}.")
            c.execute(
                "INSERT INTO access_users (name, password_hash, account_expires, created_at,"
                " created_by, password_changed_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    name,
                    hashed,
                    _iso(account_expires) if account_expires else None,
                    _iso(now),
                    by,
                    _iso(now),
                ),
            )
            for role in roles:
                c.execute(
                    "INSERT INTO access_roles (user, role, granted_at, granted_by)"
                    " VALUES (?, ?, ?, ?)",
                    (name, role, _iso(now), by),
                )
        return self._require(name)

    def _require(self, name: str) -> User:
        user = self.get_user(name)
        if user is None:
            raise AccessError(f"no user {name!r}; list them with archive users list.")
        return user

    def get_user(self, name: str) -> User | None:
        row = self.conn.execute("SELECT * FROM access_users WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        roles = tuple(
            r[0]
            for r in self.conn.execute(
                "SELECT role FROM access_roles WHERE user = ? ORDER BY role", (name,)
            )
        )
        apps = tuple(
            Application(r["speciality"], r["approved_by"], r["approved_at"], r["note"])
            for r in self.conn.execute(
                "SELECT * FROM access_applications WHERE user = ? ORDER BY id", (name,)
            )
        )
        return User(
            name=row["name"],
            roles=roles,
            disabled=bool(row["disabled"]),
            account_expires=_dt(row["account_expires"]),
            created_at=row["created_at"],
            created_by=row["created_by"],
            locked_until=_dt(row["locked_until"]),
            training=self._training(name),
            applications=apps,
        )

    def _training(self, name: str) -> TrainingRecord | None:
        row = self.conn.execute(
            "SELECT * FROM access_training WHERE user = ? ORDER BY trained_on DESC, id DESC"
            " LIMIT 1",
            (name,),
        ).fetchone()
        if row is None:
            return None
        return TrainingRecord(
            familiarisation=bool(row["familiarisation"]),
            suite_use=bool(row["suite_use"]),
            trained_on=date.fromisoformat(row["trained_on"]),
            expires_on=date.fromisoformat(row["expires_on"]),
            recorded_by=row["recorded_by"],
            policy_version=row["policy_version"],
        )

    def list_users(self) -> list[User]:
        names = [r[0] for r in self.conn.execute("SELECT name FROM access_users ORDER BY name")]
        return [u for u in (self.get_user(n) for n in names) if u is not None]

    def set_roles(
        self, name: str, roles: tuple[str, ...] | list[str], now: datetime, by: str
    ) -> User:
        """Replace a user's roles; other_speciality stays only with an approved application."""
        roles = self._check_roles(roles)
        user = self._require(name)
        if "other_speciality" in roles and not user.applications:
            raise AccessError(
                f"{name} has no approved application; other_speciality is granted by "
                "archive users approve."
            )
        with self._tx() as c:
            c.execute("DELETE FROM access_roles WHERE user = ?", (name,))
            for role in roles:
                c.execute(
                    "INSERT INTO access_roles (user, role, granted_at, granted_by)"
                    " VALUES (?, ?, ?, ?)",
                    (name, role, _iso(now), by),
                )
            if tuple(sorted(set(user.roles))) != roles:
                self._end_sessions(c, name)
        return self._require(name)

    def record_training(
        self,
        name: str,
        trained_on: date,
        now: datetime,
        by: str,
        familiarisation: bool = True,
        suite_use: bool = True,
    ) -> TrainingRecord:
        """Record completed training; its expiry comes from the account policy. A record
        that leaves the user untrained today (training withdrawn) ends their sessions."""
        self._require(name)
        if trained_on > now.date():
            raise AccessError("training cannot be recorded for a future date.")
        expires = trained_on + timedelta(days=self.policy.training_valid_days)
        with self._tx() as c:
            c.execute(
                "INSERT INTO access_training (user, familiarisation, suite_use, trained_on,"
                " expires_on, policy_version, recorded_by, recorded_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    int(familiarisation),
                    int(suite_use),
                    trained_on.isoformat(),
                    expires.isoformat(),
                    self.policy.version,
                    by,
                    _iso(now),
                ),
            )
            effective = self._training(name)  # the latest record, this one included
            if effective is None or not effective.valid_on(now.date()):
                self._end_sessions(c, name)
        record = self._training(name)
        assert record is not None
        return record

    def expire_account(self, name: str, when: datetime | None) -> User:
        """Set (or clear, with None) the moment the account stops working."""
        self._require(name)
        with self._tx() as c:
            c.execute(
                "UPDATE access_users SET account_expires = ? WHERE name = ?",
                (_iso(when) if when else None, name),
            )
            self._end_sessions(c, name)
        return self._require(name)

    def disable(self, name: str, disabled: bool = True) -> User:
        """Disable (or re-enable) an account; its tokens stop working with it. Either
        way its web sessions end: re-enabling never revives a session."""
        self._require(name)
        with self._tx() as c:
            c.execute("UPDATE access_users SET disabled = ? WHERE name = ?", (int(disabled), name))
            self._end_sessions(c, name)
        return self._require(name)

    def reset_password(self, name: str, password: str, now: datetime) -> User:
        """Set a new password, clear any lock and end every web session of the user."""
        self._require(name)
        self._check_password(password)
        hashed = self.hasher.hash(password)
        with self._tx() as c:
            c.execute(
                "UPDATE access_users SET password_hash = ?, password_changed_at = ?,"
                " failed_count = 0, first_failed_at = NULL, locked_until = NULL WHERE name = ?",
                (hashed, _iso(now), name),
            )
            self._end_sessions(c, name)
        self._cache.pop(name, None)
        return self._require(name)

    def approve_application(
        self, name: str, approver: str, speciality: str, now: datetime, note: str = ""
    ) -> User:
        """Admit another speciality: the approver must hold personnel or head_of_school."""
        self._require(name)
        boss = self._require(approver)
        if not APPROVER_ROLES & set(boss.roles):
            raise AccessError(
                f"{approver} cannot approve applications: only personnel or the Head of School may."
            )
        if approver == name:
            raise AccessError("nobody may approve their own application.")
        if not speciality.strip():
            raise AccessError("name the applicant's speciality, e.g. --speciality cardiology.")
        with self._tx() as c:
            c.execute(
                "INSERT INTO access_applications (user, speciality, approved_by, approved_at,"
                " note) VALUES (?, ?, ?, ?, ?)",
                (name, speciality.strip(), approver, _iso(now), note),
            )
            c.execute(
                "INSERT OR IGNORE INTO access_roles (user, role, granted_at, granted_by)"
                " VALUES (?, 'other_speciality', ?, ?)",
                (name, _iso(now), approver),
            )
            self._end_sessions(c, name)  # a role change
        return self._require(name)

    # -- tokens -------------------------------------------------------------------

    def create_token(
        self, name: str, now: datetime, days: int | None = None, label: str = ""
    ) -> tuple[str, str]:
        """A new API token: (token_id, plaintext). The plaintext is shown once, never stored."""
        user = self._require(name)
        if user.disabled:
            raise AccessError(f"{name} is disabled; enable the account before issuing tokens.")
        days = self.policy.token_default_days if days is None else days
        if not 1 <= days <= self.policy.token_max_days:
            raise AccessError(f"token lifetime must be 1 to {self.policy.token_max_days} days.")
        token_id = secrets.token_hex(8)
        while re.search(r"\d{6}", token_id):  # keep ids clear of the audit log's number guard
            token_id = secrets.token_hex(8)
        plaintext = f"ta1_{token_id}_{secrets.token_urlsafe(32)}"
        with self._tx() as c:
            c.execute(
                "INSERT INTO access_tokens (token_id, user, token_hash, label, created_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    token_id,
                    name,
                    _token_hash(plaintext),
                    label,
                    _iso(now),
                    _iso(now + timedelta(days=days)),
                ),
            )
        return token_id, plaintext

    def list_tokens(self, name: str | None = None) -> list[TokenInfo]:
        sql = "SELECT * FROM access_tokens"
        args: tuple[str, ...] = ()
        if name is not None:
            sql += " WHERE user = ?"
            args = (name,)
        return [
            TokenInfo(
                r["token_id"],
                r["user"],
                r["label"],
                r["created_at"],
                r["expires_at"],
                r["revoked_at"],
                r["last_used_at"],
            )
            for r in self.conn.execute(sql + " ORDER BY created_at, token_id", args)
        ]

    def revoke_token(self, token_id: str, now: datetime) -> TokenInfo:
        with self._tx() as c:
            row = c.execute(
                "SELECT revoked_at FROM access_tokens WHERE token_id = ?", (token_id,)
            ).fetchone()
            if row is None:
                raise AccessError(f"no token {token_id!r}; see archive tokens list.")
            if row[0] is None:
                c.execute(
                    "UPDATE access_tokens SET revoked_at = ? WHERE token_id = ?",
                    (_iso(now), token_id),
                )
        return next(t for t in self.list_tokens() if t.token_id == token_id)

    # -- authentication -----------------------------------------------------------

    def _principal(self, user: User, now: datetime, method: str, token_id: str | None) -> Principal:
        roles = user.roles
        if "other_speciality" in roles and not user.applications:
            roles = tuple(r for r in roles if r != "other_speciality")
        training = user.training
        trained = bool(training and training.valid_on(now.date()))
        return Principal(
            user=user.name,
            roles=roles,
            trained=trained,
            training_expires=training.expires_on if training else None,
            method=method,
            token_id=token_id,
        )

    def _account_state(self, user: User, now: datetime) -> str | None:
        if user.disabled:
            return "disabled"
        if user.account_expires is not None and now >= user.account_expires:
            return "account_expired"
        return None

    def _cache_mac(self, name: str, stored_hash: str, password: str) -> bytes:
        message = f"{name}\0{stored_hash}\0{password}".encode()
        return hmac.new(self._cache_key, message, hashlib.sha256).digest()

    def authenticate_basic(
        self, name: str, password: str, now: datetime, address: str | None = None
    ) -> Principal | AuthFailure:
        """Check a user name and password. With the client's `address`, a pair or address
        in its backoff is refused before anything is checked, and a failure is counted
        into the backoff; no number of failures locks the account (throttle.py)."""
        throttled = self._throttled(f"user:{name}", name, address, now)
        if throttled is not None:
            return throttled
        generation = self.watch.generation if self.watch else 0  # before any DB read
        hit = self._remembered(name, name, password, now)
        if hit is not None:
            self._succeeded(name, address)
            return hit
        row = self.conn.execute(
            "SELECT password_hash, locked_until, failed_count FROM access_users WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            self._verify(self._dummy_hash, password)  # same cost as a real user
            return self._failed("bad_credentials", f"user:{name}", name, address, now)
        locked_until = _dt(row["locked_until"])
        if locked_until is not None and now < locked_until:
            return AuthFailure("locked", name)
        stored = row["password_hash"]
        mac = self._cache_mac(name, stored, password)
        cached = self._cache.get(name)
        ok = bool(cached and cached[1] > time.monotonic() and hmac.compare_digest(cached[0], mac))
        verified = False
        if not ok:
            ok = verified = self._verify(stored, password)
            if ok:
                self._cache[name] = (mac, time.monotonic() + self.policy.credential_cache_seconds)
        if not ok:
            return self._failed("bad_credentials", f"user:{name}", name, address, now)
        self._succeeded(name, address)
        if row["locked_until"] is not None or row["failed_count"]:
            with self._tx() as c:
                c.execute(
                    "UPDATE access_users SET failed_count = 0, first_failed_at = NULL,"
                    " locked_until = NULL WHERE name = ?",
                    (name,),
                )
        if verified and self.hasher.check_needs_rehash(stored):  # not on every cached hit
            self._rehash(name, stored, password)
        user = self._require(name)
        state = self._account_state(user, now)
        if state:
            return AuthFailure(state, name)
        principal = self._principal(user, now, "basic", None)
        self._remember(name, name, password, now, user, principal, generation)
        return principal

    def watch_changes(self, watch: ChangeWatch) -> None:
        """Remember authenticated principals while `watch` sees no change in the DB.

        Without it every request reads the access tables (6 small queries). Inside
        Orthanc each query releases and re-takes the GIL that all HTTP threads share,
        which costs milliseconds under load; with it a repeated credential is answered
        from memory until anything is written to the archive DB (password reset, lock,
        disable, expiry, role or training change - by this process or the CLI), which
        the watch notices within its polling interval.
        """
        self.watch = watch

    def _remembered(self, key: str, name: str, secret: str, now: datetime) -> Principal | None:
        watch = self.watch
        if watch is None:
            return None
        entry = self._principals.get(key)
        if entry is None or entry[1] != watch.generation or entry[2] != now.date():
            return None
        if entry[3] is not None and now >= entry[3]:
            return None
        if not hmac.compare_digest(entry[0], self._cache_mac(name, "principal", secret)):
            return None
        return entry[4]

    def _remember(
        self,
        key: str,
        name: str,
        secret: str,
        now: datetime,
        user: User,
        principal: Principal,
        generation: int,
    ) -> None:
        """Remember a principal as of `generation`, read before the DB was: a write in
        between bumps the generation, so a stale entry is never served."""
        if self.watch is None:
            return
        self._principals[key] = (
            self._cache_mac(name, "principal", secret),
            generation,
            now.date(),
            user.account_expires,
            principal,
        )

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _rehash(self, name: str, stored: str, password: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE access_users SET password_hash = ? WHERE name = ? AND password_hash = ?",
                (self.hasher.hash(password), name, stored),
            )

    def _succeeded(self, name: str, address: str | None) -> None:
        if address is not None:
            self.throttle.success(f"user:{name}", address)

    # -- throttling -----------------------------------------------------------------

    def _throttled(self, key: str, name: str | None, address: str | None,
                   now: datetime) -> AuthFailure | None:  # fmt: skip
        """A refusal, unchecked, while this (account, address) or address backs off."""
        if address is None:
            return None
        refusal = self.throttle.check(key, address, now.timestamp())
        if refusal is None:
            return None
        return AuthFailure("throttled", name, refusal.retry_after, refusal.reason)

    def _failed(self, reason: str, key: str, name: str | None, address: str | None,
                now: datetime) -> AuthFailure:  # fmt: skip
        """Count a failed sign-in against the (account, address) pair and the address."""
        if address is None:
            return AuthFailure(reason, name)
        refusal, alert = self.throttle.failure(key, address, now.timestamp())
        return AuthFailure(
            reason,
            name,
            refusal.retry_after if refusal else None,
            refusal.reason if refusal else "",
            alert,
        )

    def authenticate_bearer(
        self, token: str, now: datetime, address: str | None = None
    ) -> Principal | AuthFailure:
        """Check an API token (hash compared in constant time); record when it was used.
        With the client's `address`, failures back off per (token, address) and address."""
        match = _TOKEN.match(token)
        key = f"token:{match.group(1)}" if match else "token:malformed"
        throttled = self._throttled(key, None, address, now)
        if throttled is not None:
            return throttled
        if not match:
            return self._failed("malformed", key, None, address, now)
        token_id = match.group(1)
        generation = self.watch.generation if self.watch else 0  # before any DB read
        hit = self._remembered(f"token:{token_id}", token_id, token, now)
        if hit is not None:
            return hit
        row = self.conn.execute(
            "SELECT * FROM access_tokens WHERE token_id = ?", (token_id,)
        ).fetchone()
        computed = _token_hash(token)
        stored = row["token_hash"] if row else "0" * 64
        if not hmac.compare_digest(stored.encode(), computed.encode()) or row is None:
            return self._failed("bad_credentials", key, None, address, now)
        name = row["user"]
        # A revoked or expired token is a real one (its hash matched): not a guess, so
        # it does not count into the backoff (an intake watcher with a stale token must
        # not slow down everybody else on its address).
        if row["revoked_at"] is not None:
            return AuthFailure("token_revoked", name)
        if now >= datetime.fromisoformat(row["expires_at"]):
            return AuthFailure("token_expired", name)
        user = self._require(name)
        state = self._account_state(user, now)
        if state:
            return AuthFailure(state, name)
        last = _dt(row["last_used_at"])
        resolution = timedelta(seconds=self.policy.token_last_used_resolution_seconds)
        if last is None or now - last >= resolution:
            with self._tx() as c:
                c.execute(
                    "UPDATE access_tokens SET last_used_at = ? WHERE token_id = ?",
                    (_iso(now), token_id),
                )
        principal = self._principal(user, now, "bearer", token_id)
        # Remembered until the token expires, the next last_used write is due, or the DB
        # changes (revocation is a write, so it ends the memory too).
        until = min(
            datetime.fromisoformat(row["expires_at"]),
            (now if last is None or now - last >= resolution else last) + resolution,
            *([user.account_expires] if user.account_expires else []),
        )
        self._remember(
            f"token:{token_id}",
            token_id,
            token,
            now,
            replace(user, account_expires=until),
            principal,
            generation,
        )
        return principal

    def local_principal(self, name: str, now: datetime) -> Principal:
        """The Principal of a named user acting through the CLI on the home itself."""
        return self._principal(self._require(name), now, "local", None)

    # -- DICOM nodes --------------------------------------------------------------

    def add_dicom_node(
        self,
        name: str,
        aet: str,
        host: str,
        port: int,
        may_store: bool = False,
        may_query: bool = False,
    ) -> DicomNode:
        """Register a source (may_store) or suite workstation (may_query) by AE title + host."""
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise AccessError("node names are letters, digits, '-' and '_', e.g. ws-01.")
        if not _AET.match(aet) or aet != aet.strip():
            raise AccessError(f"AE title {aet!r} must be 1-16 printable ASCII, no backslash.")
        if not host.strip():
            raise AccessError("give the node's host (IP address or name).")
        if not 1 <= port <= 65535:
            raise AccessError("port must be 1 to 65535.")
        try:
            with self._tx() as c:
                c.execute(
                    "INSERT INTO access_dicom_nodes (name, aet, host, port, may_store,"
                    " may_query) VALUES (?, ?, ?, ?, ?, ?)",
                    (name, aet, normalise_host(host), port, int(may_store), int(may_query)),
                )
        except sqlite3.IntegrityError:
            raise AccessError(
                f"a node named {name} or with AE {aet} at {host} is already registered."
            ) from None
        return next(n for n in self.list_dicom_nodes() if n.name == name)

    def list_dicom_nodes(self) -> list[DicomNode]:
        return [
            DicomNode(
                r["name"],
                r["aet"],
                r["host"],
                r["port"],
                bool(r["may_store"]),
                bool(r["may_query"]),
            )
            for r in self.conn.execute("SELECT * FROM access_dicom_nodes ORDER BY name")
        ]

    def remove_dicom_node(self, name: str) -> None:
        with self._tx() as c:
            if c.execute("DELETE FROM access_dicom_nodes WHERE name = ?", (name,)).rowcount == 0:
                raise AccessError(f"no DICOM node named {name!r}.")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ChangeWatch:
    """Notices any write to the access tables by any connection, process or node, cheaply.

    A background thread polls a version every `interval` seconds on its own connection
    and bumps `generation` when it changes; readers only compare an int (no I/O, no
    lock). A change is noticed within `interval`. On SQLite the version is `PRAGMA
    data_version` (any commit to archive.db by another connection); on PostgreSQL it is
    `access_change_counter`, bumped by statement triggers on every access_ table (schema
    step 2), so a user added or disabled on one node is seen by every node.

    `target`: the archive's configuration, or the path of a SQLite archive.db.
    """

    def __init__(self, target: str | Path | ArchiveConfig, interval: float = 0.25) -> None:
        import sqlite3 as _sqlite3

        from archive.db import dialect, open_database

        self.generation = 0
        self.interval = interval
        if isinstance(target, ArchiveConfig):
            self._conn = open_database(target)
        else:
            self._conn = _sqlite3.connect(
                str(target), check_same_thread=False, isolation_level=None
            )
        self._probe = (
            "SELECT version FROM access_change_counter WHERE id = 1"
            if dialect(self._conn) == "postgresql"
            else "PRAGMA data_version"
        )
        self._version = self._read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-change-watch", daemon=True)
        self._thread.start()

    def _read(self) -> int:
        return int(self._conn.execute(self._probe).fetchone()[0])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                version = self._read()
            except (sqlite3.Error, ArchiveError):
                version = -1  # unknown (e.g. PostgreSQL unreachable): treat as changed
            if version != self._version or version == -1:
                self._version = version
                self.generation += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        if not self._thread.is_alive():
            self._conn.close()

"""Credentials: passwords checked and API tokens (table access_tokens).

Everything the filter needs to authenticate a request. Secrets are never stored:
passwords as argon2id hashes (set by archive.access.accounts), API tokens as SHA-256 of
the token (they carry 256 random bits, so a slow hash adds nothing). Secret comparisons
use hmac.compare_digest; an unknown user still pays one argon2 verification so that
response time does not reveal which names exist.

Failed sign-ins never lock an account: given the client's address, `authenticate_*`
consult a per-(account, address) and per-address backoff (`throttle.Throttle`) before
checking anything, and count failures into it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import insert, select, update

from archive.access.accounts import AccessError, Accounts, User, _dt, _iso
from archive.access.policy import application_role
from archive.access.principal import AuthFailure, Principal
from archive.access.tables import tokens, users
from archive.access.throttle import Throttle, ThrottlePolicy

if TYPE_CHECKING:
    from archive.access.watch import ChangeWatch

_TOKEN = re.compile(r"^ta1_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


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


class Credentials:
    """Authentication by password or API token, and the tokens themselves.

    One instance per process shares, across the per-thread copies `bind` makes, the
    verified-credential cache, its key, the dummy hash and the remembered principals:
    the Orthanc plugin keeps one store per thread (sqlite connections are per thread) but
    one credential cache for all, so a user pays one argon2id verification per
    `credential_cache_seconds`, not one per HTTP thread.
    """

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self._dummy_hash = accounts.hasher.hash(secrets.token_urlsafe(16))
        self._cache_key = secrets.token_bytes(32)
        self._cache: dict[str, tuple[bytes, float]] = {}
        self.watch: ChangeWatch | None = None
        self._principals: dict[str, tuple[bytes, int, date, datetime | None, Principal]] = {}
        # our own writes take effect at once
        accounts.db.after_write.append(self._principals.clear)
        accounts.after_password_change.append(lambda name: self._cache.pop(name, None))
        p = accounts.policy
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

    def bind(self, accounts: Accounts) -> Credentials:
        """The same credentials over `accounts` on another connection, sharing caches."""
        other = object.__new__(Credentials)
        other.__dict__.update(self.__dict__)
        other.accounts = accounts
        return other

    @property
    def conn(self) -> Any:
        return self.accounts.conn

    @property
    def policy(self) -> Any:
        return self.accounts.policy

    @property
    def hasher(self) -> Any:
        return self.accounts.hasher

    def _tx(self) -> AbstractContextManager[Any]:
        return self.accounts._tx()

    def _require(self, name: str) -> User:
        return self.accounts._require(name)

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
                insert(tokens).values(
                    token_id=token_id,
                    user=name,
                    token_hash=_token_hash(plaintext),
                    label=label,
                    created_at=_iso(now),
                    expires_at=_iso(now + timedelta(days=days)),
                )
            )
        return token_id, plaintext

    def list_tokens(self, name: str | None = None) -> list[TokenInfo]:
        statement = select(tokens).order_by(tokens.c.created_at, tokens.c.token_id)
        if name is not None:
            statement = statement.where(tokens.c.user == name)
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
            for r in self.conn.execute(statement)
        ]

    def revoke_token(self, token_id: str, now: datetime) -> TokenInfo:
        with self._tx() as c:
            row = c.execute(
                select(tokens.c.revoked_at).where(tokens.c.token_id == token_id).with_for_update()
            ).fetchone()
            if row is None:
                raise AccessError(f"no token {token_id!r}; see archive tokens list.")
            if row[0] is None:
                c.execute(
                    update(tokens).where(tokens.c.token_id == token_id).values(revoked_at=_iso(now))
                )
        return next(t for t in self.list_tokens() if t.token_id == token_id)

    def _principal(self, user: User, now: datetime, method: str, token_id: str | None) -> Principal:
        roles = user.roles
        granted = application_role()
        if granted in roles and not user.applications:
            roles = tuple(r for r in roles if r != granted)
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
            select(users.c.password_hash, users.c.locked_until, users.c.failed_count).where(
                users.c.name == name
            )
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
                    update(users)
                    .where(users.c.name == name)
                    .values(failed_count=0, first_failed_at=None, locked_until=None)
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
                update(users)
                .where(users.c.name == name, users.c.password_hash == stored)
                .values(password_hash=self.hasher.hash(password))
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
        row = self.conn.execute(select(tokens).where(tokens.c.token_id == token_id)).fetchone()
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
                    update(tokens)
                    .where(tokens.c.token_id == token_id)
                    .values(last_used_at=_iso(now))
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


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

"""Accounts: users, roles, training and applications (tables access_users, _roles,
_training, _applications).

The access room is split by what it holds: accounts here; passwords checked and API
tokens in archive.access.credentials; DICOM nodes and the one workstation registry in
archive.access.nodes; the change watch in archive.access.watch. They share one
connection and write lock (archive.access.schema.AccessDb). Passwords are stored only as
argon2id hashes. Every change that must end a user's web sessions bumps the account's
`session_epoch` in the same transaction (`_end_sessions`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import delete, insert, select, update

from archive.access.policy import ROLES, AccountPolicy, application_approvers, application_role
from archive.access.schema import AccessDb
from archive.access.tables import applications, training, users
from archive.access.tables import roles as role_table
from archive.db import dialect_insert
from archive.db.errors import IntegrityError
from archive.errors import ArchiveError

_USER_NAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")


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


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("datetimes given to the access store must be timezone-aware")
    return moment.astimezone(UTC).isoformat()


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not _USER_NAME.match(name) or re.search(r"\d{6}", name):
        raise AccessError(
            f"user name {name!r} must be 2-32 characters a-z, 0-9, '.', '_' or '-', starting "
            "with a letter (no long numbers such as staff or NHS numbers)."
        )
    return name


class Accounts:
    """Users, their roles, training and applications, and their web sessions' epoch.

    `hasher` is injectable so tests can use cheap argon2 parameters; production uses
    argon2-cffi's default (argon2id, RFC 9106 low-memory profile). Passwords are hashed
    here when set; they are checked by archive.access.credentials.
    """

    def __init__(
        self,
        db: AccessDb | Any,
        policy: AccountPolicy | None = None,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.db = db if isinstance(db, AccessDb) else AccessDb(db)
        self.policy = policy or AccountPolicy()
        self.hasher = hasher or PasswordHasher()
        self.after_password_change: list[Callable[[str], None]] = []

    @property
    def conn(self) -> Any:
        return self.db.conn

    def bind(self, db: AccessDb) -> Accounts:
        """The same accounts on another connection (see AccessDb.bind)."""
        other = object.__new__(Accounts)
        other.__dict__.update(self.__dict__)
        other.db = db
        return other

    def _tx(self) -> AbstractContextManager[Any]:
        return self.db.tx()

    # -- sessions -----------------------------------------------------------------

    @staticmethod
    def _end_sessions(c: Any, name: str) -> None:
        """Bump the account's session epoch (inside the caller's transaction): every web
        session made before this change is dead, and stays dead whatever comes next."""
        c.execute(
            update(users)
            .where(users.c.name == name)
            .values(session_epoch=users.c.session_epoch + 1)
        )

    def session_epoch(self, name: str) -> int | None:
        """The account's session epoch (None for an unknown user)."""
        epoch = self.conn.execute(
            select(users.c.session_epoch).where(users.c.name == name)
        ).scalar()
        return int(epoch) if epoch is not None else None

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
        """Create a named user. The application role ([applications] in actions.toml) is
        granted only by approve_application."""
        check_user_name(name)
        self._check_password(password)
        roles = self._check_roles(roles)
        granted = application_role()
        if granted in roles:
            raise AccessError(
                f"{granted} is granted only by an approved application: "
                "archive users approve NAME --speciality S (as the approver)."
            )
        hashed = self.hasher.hash(password)
        with self._tx() as c:
            if c.execute(select(users.c.name).where(users.c.name == name)).fetchone():
                raise AccessError(f"user {name} already exists; see archive users show {name}.")
            try:
                c.execute(
                    insert(users).values(
                        name=name,
                        password_hash=hashed,
                        account_expires=_iso(account_expires) if account_expires else None,
                        created_at=_iso(now),
                        created_by=by,
                        password_changed_at=_iso(now),
                    )
                )
            except IntegrityError:  # made at the same moment by another node
                raise AccessError(
                    f"user {name} already exists; see archive users show {name}."
                ) from None
            self._grant(c, name, roles, now, by)
        return self._require(name)

    @staticmethod
    def _grant(c: Any, name: str, granted: tuple[str, ...], now: datetime, by: str) -> None:
        if granted:
            c.execute(
                insert(role_table),
                [
                    {"user": name, "role": role, "granted_at": _iso(now), "granted_by": by}
                    for role in granted
                ],
            )

    def _require(self, name: str) -> User:
        user = self.get_user(name)
        if user is None:
            raise AccessError(f"no user {name!r}; list them with archive users list.")
        return user

    def get_user(self, name: str) -> User | None:
        row = self.conn.execute(select(users).where(users.c.name == name)).fetchone()
        if row is None:
            return None
        held = tuple(
            self.conn.execute(
                select(role_table.c.role)
                .where(role_table.c.user == name)
                .order_by(role_table.c.role)
            ).scalars()
        )
        apps = tuple(
            Application(r["speciality"], r["approved_by"], r["approved_at"], r["note"])
            for r in self.conn.execute(
                select(applications).where(applications.c.user == name).order_by(applications.c.id)
            )
        )
        return User(
            name=row["name"],
            roles=held,
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
            select(training)
            .where(training.c.user == name)
            .order_by(training.c.trained_on.desc(), training.c.id.desc())
            .limit(1)
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
        names = self.conn.execute(select(users.c.name).order_by(users.c.name)).scalars()
        return [u for u in (self.get_user(n) for n in names) if u is not None]

    def set_roles(
        self, name: str, roles: tuple[str, ...] | list[str], now: datetime, by: str
    ) -> User:
        """Replace a user's roles; the application role stays only with an approved
        application."""
        wanted = self._check_roles(roles)
        user = self._require(name)
        granted = application_role()
        if granted in wanted and not user.applications:
            raise AccessError(
                f"{name} has no approved application; {granted} is granted by "
                "archive users approve."
            )
        with self._tx() as c:
            c.execute(delete(role_table).where(role_table.c.user == name))
            self._grant(c, name, wanted, now, by)
            if tuple(sorted(set(user.roles))) != wanted:
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
                insert(training).values(
                    user=name,
                    familiarisation=int(familiarisation),
                    suite_use=int(suite_use),
                    trained_on=trained_on.isoformat(),
                    expires_on=expires.isoformat(),
                    policy_version=self.policy.version,
                    recorded_by=by,
                    recorded_at=_iso(now),
                )
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
                update(users)
                .where(users.c.name == name)
                .values(account_expires=_iso(when) if when else None)
            )
            self._end_sessions(c, name)
        return self._require(name)

    def disable(self, name: str, disabled: bool = True) -> User:
        """Disable (or re-enable) an account; its tokens stop working with it. Either
        way its web sessions end: re-enabling never revives a session."""
        self._require(name)
        with self._tx() as c:
            c.execute(update(users).where(users.c.name == name).values(disabled=int(disabled)))
            self._end_sessions(c, name)
        return self._require(name)

    def reset_password(self, name: str, password: str, now: datetime) -> User:
        """Set a new password, clear any lock and end every web session of the user."""
        self._require(name)
        self._check_password(password)
        hashed = self.hasher.hash(password)
        with self._tx() as c:
            c.execute(
                update(users)
                .where(users.c.name == name)
                .values(
                    password_hash=hashed,
                    password_changed_at=_iso(now),
                    failed_count=0,
                    first_failed_at=None,
                    locked_until=None,
                )
            )
            self._end_sessions(c, name)
        for callback in self.after_password_change:
            callback(name)
        return self._require(name)

    def approve_application(
        self, name: str, approver: str, speciality: str, now: datetime, note: str = ""
    ) -> User:
        """Admit another speciality: the approver must hold a role that may
        application.approve (actions.toml)."""
        self._require(name)
        boss = self._require(approver)
        if not application_approvers() & set(boss.roles):
            raise AccessError(
                f"{approver} cannot approve applications: their role does not allow "
                "application.approve."
            )
        if approver == name:
            raise AccessError("nobody may approve their own application.")
        if not speciality.strip():
            raise AccessError("name the applicant's speciality, e.g. --speciality cardiology.")
        with self._tx() as c:
            c.execute(
                insert(applications).values(
                    user=name,
                    speciality=speciality.strip(),
                    approved_by=approver,
                    approved_at=_iso(now),
                    note=note,
                )
            )
            c.execute(
                dialect_insert(c, role_table)
                .values(
                    user=name, role=application_role(), granted_at=_iso(now), granted_by=approver
                )
                .on_conflict_do_nothing()
            )
            self._end_sessions(c, name)  # a role change
        return self._require(name)

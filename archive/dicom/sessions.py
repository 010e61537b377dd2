"""Workstation sessions: "I am at MacLab 3" - who a workstation's retrieves are for.

A trainer (anyone the action policy lets sign in at a workstation) signs in for one
registered suite workstation from their own authenticated session (web form, REST route
or the CLI with their own credentials). Until they sign out, another person signs in at
that workstation, or the session expires (policies/access/dicom.toml [session]), every
C-MOVE and C-GET from that workstation's AE title is authorised as that person
(archive/core `pull.create`), audited with their name and recorded in the pull inventory
under it. Without a session, the policy's `unattended_retrieve` decides whether the
workstation may retrieve on its own (attributed to `workstation:<name>`).

One person is at one workstation at a time: signing in ends that person's session at any
other workstation and anyone else's at this one. A session also ends, without a word,
when the account changes (password, roles, disabled: its session epoch moves on), expires,
or the person's training lapses: the retrieve is then refused or unattended, and the
audit says which.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    insert,
    or_,
    select,
    update,
)

from archive.core import Ports, Refusal, Refused, Resource, perform
from archive.db import create_tables, migrate

ROOM = "dicom_workstation_sessions"
Int = BigInteger().with_variant(Integer(), "sqlite")
metadata = MetaData()
sessions = Table(
    "dicom_workstation_sessions",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("workstation", Text, nullable=False),
    Column("user", Text, nullable=False),
    Column("epoch", Int, nullable=False),
    Column("trained", Int, nullable=False),
    Column("started_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("ended_at", Text),
    Column("ended_by", Text),
    sqlite_autoincrement=True,
)
Index("dicom_workstation_sessions_open", sessions.c.workstation, sessions.c.ended_at)
# Homes made before issue 27 ran step 1 as the equivalent SQL script.
STEPS = [create_tables(metadata, [sessions])]
SIGN_IN = "workstation.sign_in"
SIGN_OUT = "workstation.sign_out"


def _ts(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


@dataclass(frozen=True)
class WorkstationSession:
    id: int
    workstation: str
    user: str
    epoch: int
    trained: bool
    started_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workstation": self.workstation,
            "user": self.user,
            "started_at": self.started_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
        }

    @property
    def audit(self) -> dict[str, Any]:
        return {"session": self.id, "workstation": self.workstation,
                "expires_at": self.expires_at.isoformat()}  # fmt: skip


def _session(row) -> WorkstationSession:
    return WorkstationSession(
        int(row["id"]),
        row["workstation"],
        row["user"],
        int(row["epoch"]),
        bool(row["trained"]),
        datetime.fromisoformat(row["started_at"]),
        datetime.fromisoformat(row["expires_at"]),
        datetime.fromisoformat(row["ended_at"]) if row["ended_at"] else None,
    )


class SessionTable:
    """Reads of the sessions table (writes go through the use cases below)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        migrate(conn, ROOM, STEPS)

    def active(self, workstation: str, now: datetime) -> WorkstationSession | None:
        c = sessions.c
        row = self.conn.execute(
            select(sessions)
            .where(c.workstation == workstation, c.ended_at.is_(None), c.expires_at > _ts(now))
            .order_by(c.id.desc())
            .limit(1)
        ).fetchone()
        return _session(row) if row else None

    def all_active(self, now: datetime) -> list[WorkstationSession]:
        c = sessions.c
        rows = self.conn.execute(
            select(sessions)
            .where(c.ended_at.is_(None), c.expires_at > _ts(now))
            .order_by(c.workstation)
        )
        return [_session(r) for r in rows]

    def _end(self, tx, where: Any, now: datetime, by: str) -> int:
        return tx.execute(
            update(sessions)
            .where(sessions.c.ended_at.is_(None), where)
            .values(ended_at=_ts(now), ended_by=by)
        ).rowcount


def _workstation_known(conn: Any, access_nodes: list, name: str) -> bool:
    from archive.access.nodes import workstations

    return workstations(conn).exists(name) and any(
        n.name == name and n.may_query and not n.may_store for n in access_nodes
    )


def sign_in(
    ports: Ports,
    principal,
    workstation: str,
    *,
    epoch: int,
    nodes: list,
    minutes: int,
    longest: int,
) -> WorkstationSession | Refusal:
    """`principal` is at `workstation` for `minutes` (at most `longest`). `epoch` is the
    account's session epoch now; `nodes` the registered DICOM nodes."""
    name = (workstation or "").strip()
    table = SessionTable(ports.db)
    now = ports.clock()

    def act(tx, permit):
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes:
            why = "minutes must be a whole number of minutes, at least 1"
            raise Refused(Refusal(SIGN_IN, why, "Give a length, or leave it out.", "invalid"))
        if minutes > longest:
            why = f"a session lasts at most {longest} minutes"
            raise Refused(Refusal(SIGN_IN, why, "Ask for a shorter one.", "invalid"))
        if not _workstation_known(tx, nodes, name):
            why = f"{name!r} is not a registered suite workstation"
            raise Refused(Refusal(SIGN_IN, why, "Choose a listed workstation.", "not_found"))
        by = principal.user
        where = or_(sessions.c.workstation == name, sessions.c.user == by)
        table._end(tx, where, now, f"replaced by {by}")  # noqa: SLF001
        expires = now + timedelta(minutes=minutes)
        cur = tx.execute(
            insert(sessions).values(
                workstation=name,
                user=by,
                epoch=int(epoch),
                trained=int(bool(principal.trained)),
                started_at=_ts(now),
                expires_at=_ts(expires),
            )
        )
        return WorkstationSession(int(cur.lastrowid), name, by, int(epoch),
                                  bool(principal.trained), now, expires)  # fmt: skip

    return perform(ports, principal, SIGN_IN, Resource("workstation", name), act,
                   target=f"workstation:{name}")  # fmt: skip


def sign_out(ports: Ports, principal, workstation: str) -> WorkstationSession | Refusal:
    """End the session at `workstation`: its own person, or personnel (policy: owner)."""
    name = (workstation or "").strip()
    table = SessionTable(ports.db)
    now = ports.clock()
    found: dict[str, WorkstationSession | None] = {}

    def resource(tx) -> Resource:
        found["session"] = table.active(name, now)
        # nobody signed in: let the act say so (rather than "only the owner")
        owner = found["session"].user if found["session"] else principal.user
        return Resource("workstation session", name, owner=owner)

    def act(tx, permit):
        session = found["session"]
        if session is None:
            raise Refused(Refusal(SIGN_OUT, f"nobody is signed in at {name!r}",
                                  "Nothing to do; sign in first to attribute retrieves.",
                                  "not_found"))  # fmt: skip
        table._end(tx, sessions.c.id == session.id, now, principal.user)  # noqa: SLF001
        return replace(session, ended_at=now)

    return perform(ports, principal, SIGN_OUT, resource, act, target=f"workstation:{name}")


def session_principal(store, session: WorkstationSession, now: datetime):
    """The signed-in person's Principal now, or None if the session no longer stands:
    account gone, disabled or expired, changed since sign-in (session epoch), or
    training lapsed since sign-in (fail closed)."""
    user = store.get_user(session.user)
    if user is None or user.disabled:
        return None
    if user.account_expires is not None and now >= user.account_expires:
        return None
    if store.session_epoch(user.name) != session.epoch:
        return None
    principal = replace(store.local_principal(user.name, now), method="workstation-session")
    if session.trained and not principal.trained:
        return None
    return principal


class _Recorder:
    """An audit port over a `record(event)` function (the runtime's, the plugin's)."""

    def __init__(self, record) -> None:
        self.append = record


def ports_for(db: Any, record, policies_dir, source: str, clock=None) -> Ports:
    ports = Ports(db=db, audit=_Recorder(record), policies_dir=policies_dir, source=source)
    if clock is not None:
        ports.clock = clock
    return ports


def start(
    ports: Ports, store, principal, workstation: str, minutes: int | None = None
) -> WorkstationSession | Refusal:
    """Sign `principal` in at `workstation` for `minutes` (the policy's length when not
    given; never beyond its maximum): what the web form, the REST route and the CLI call.
    `store` is the access store (session epoch, registered nodes)."""
    from archive.dicom.policy import load_front_policy

    policy = load_front_policy(ports.policies_dir)
    epoch = store.session_epoch(principal.user)
    return sign_in(
        ports, principal, workstation, epoch=-1 if epoch is None else epoch,
        nodes=store.list_dicom_nodes(),
        minutes=policy.session_minutes if minutes in (None, "") else minutes,
        longest=policy.session_max_minutes,
    )  # fmt: skip

"""The shape of every use case: authorise, act in one transaction, audit once, answer.

    def approve_removal(ports, principal, request_id, text):
        def act(tx, permit):
            ...                      # read and write this room's tables through `tx`
            return Approved(...)
        return perform(ports, principal, "removal.approve", resource, act,
                       target=f"removal:{request_id}")

`perform` refuses (and audits the refusal) before anything is read for writing, runs
`act` inside one transaction, rolls back on a `Refused` raised from inside, and writes
exactly one audit record whatever happens. It returns the act's result or a Refusal.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from archive.access.principal import Principal
from archive.audit.events import AuditEvent
from archive.core.authorise import (
    ActionPolicy,
    Permit,
    Refusal,
    Refused,
    Resource,
    authorise,
    load_action_policy,
)
from archive.errors import ArchiveError

T = TypeVar("T")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Ports:
    """What a use case may touch: the database, the audit log, the clock, the policies,
    and (only where a use case needs them) the vault, a DICOM sender, an Orthanc port."""

    db: Any
    audit: Any  # anything with append(AuditEvent) -> int
    policies_dir: Path
    clock: Callable[[], datetime] = _utc_now
    source: str = "local"  # where the act came from: "rest", "web", "cli", "dicom"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def actions(self) -> ActionPolicy:
        return load_action_policy(self.policies_dir)


@contextmanager
def transaction(conn: Any, *, durable: bool = True) -> Iterator[Any]:
    """One write transaction taken up front (BEGIN IMMEDIATE on SQLite; on PostgreSQL a
    plain BEGIN, rows locked as the act changes them: archive.db.connection).

    `durable=False`, SQLite only: the commit does not wait for the disk (its WAL frames
    are written, not fsynced: synchronous=NORMAL for this commit). A process crash loses
    nothing (the page cache survives); a power cut can lose it until the next durable
    commit of the same database, whose fsync of the WAL carries every frame before it.
    Only for a caller who makes such a commit before it tells anyone the work is done
    (the ingest callback: the storage area's ledger row, issue 26). On PostgreSQL the
    commit stays synchronous."""
    if not durable:
        with _relaxed_sync(conn):
            with transaction(conn) as tx:
                yield tx
        return
    begin_write = getattr(type(conn), "begin_write", None)
    if begin_write is not None:
        if conn.in_transaction:
            conn.commit()
        conn.begin_write()
    elif isinstance(conn, sqlite3.Connection):
        if conn.in_transaction:
            conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
    else:  # fail closed: never run a use case's writes outside a transaction
        raise ArchiveError(
            f"a use case's transaction needs an archive.db Connection (archive.db."
            f"open_database), not {type(conn).__name__}; this is a bug."
        )
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


@contextmanager
def _relaxed_sync(conn: Any) -> Iterator[None]:
    """synchronous=NORMAL on an SQLite connection while inside, then its level again."""
    sqlite = isinstance(conn, sqlite3.Connection) or getattr(conn, "dialect", "") == "sqlite"
    level = conn.execute("PRAGMA synchronous").fetchone()[0] if sqlite else None
    relax = level is not None and level > 1  # FULL (2) or EXTRA (3)
    if relax:
        if conn.in_transaction:
            conn.commit()
        conn.execute("PRAGMA synchronous=NORMAL")
    try:
        yield
    finally:
        if relax:
            conn.execute(f"PRAGMA synchronous={int(level)}")


def audit_detail(result: Any) -> dict[str, Any]:
    """What a result says about itself for the audit record (its `audit` attribute)."""
    detail = getattr(result, "audit", None)
    if callable(detail):
        detail = detail()
    return dict(detail or {})


def perform(
    ports: Ports,
    principal: Principal | None,
    action: str,
    resource: Resource | Callable[[Any], Resource] | None,
    act: Callable[[Any, Permit], T],
    *,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    record: str | None = None,
) -> T | Refusal:
    """Authorise, act in one transaction, audit once, return the result or a refusal.

    `resource` may be a function of the open transaction, so that the state it is
    authorised on is the state the act changes (read under the same lock). `record`
    names the audit record when it is more precise than the policy's action (e.g.
    "catalogue.case.search" under "case.view"); a result with an `audit_target`
    (a collection just created) names the record's target itself."""
    actor = principal.user if principal is not None else "anonymous"
    roles = tuple(principal.roles) if principal is not None else ()
    outcome: T | Refusal
    try:
        with transaction(ports.db) as tx:
            res = resource(tx) if callable(resource) else resource
            verdict = authorise(ports.actions, principal, action, res)
            if not verdict:
                raise Refused(verdict)
            outcome = act(tx, verdict)
    except Refused as exc:
        outcome = exc.refusal
    fields = dict(detail or {})
    if isinstance(outcome, Refusal):
        fields.update({"reason": outcome.reason, "code": outcome.code})
        result = "denied"
    else:
        fields.update(audit_detail(outcome))
        target = getattr(outcome, "audit_target", None) or target
        result = "success"
    ports.audit.append(
        AuditEvent(
            action=record or action,
            outcome=result,
            actor=actor,
            roles=roles,
            source=ports.source,
            target=target,
            detail=fields,
        )
    )
    return outcome

"""Send catalogue changes to the archive's audit log.

The interface layer (CLI, REST route) knows who is acting, with which roles and from
where; it builds a sink here and hands it to `Catalogue(on_change=...)`. The sink appends
before the catalogue commits, so an audit failure (AuditError) rolls the change back.
"""

from __future__ import annotations

from collections.abc import Iterable

from archive.audit import AuditEvent, AuditLog
from archive.catalogue.changes import CatalogueChange, ChangeSink


def audit_sink(log: AuditLog, roles: Iterable[str] = (), source: str = "cli") -> ChangeSink:
    """A change sink writing one audit event per catalogue change."""
    role_tuple = tuple(roles)

    def sink(change: CatalogueChange) -> None:
        log.append(
            AuditEvent(
                action=change.action,
                outcome=change.outcome,
                actor=change.actor,
                roles=role_tuple,
                source=source,
                target=change.target,
                detail=dict(change.detail),
            )
        )

    return sink

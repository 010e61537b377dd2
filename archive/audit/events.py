"""What one audit record says, and the guard that keeps identifiers out of it.

Field names map onto the DICOM audit message (PS3.15 A.5, after RFC 3881) so that the
log can be read by, or converted for, a standard audit repository:

    AuditEvent / record    PS3.15 A.5 element
    ---------------------  -----------------------------------------------------------
    action                 EventIdentification/EventID (+ EventTypeCode); dotted name,
                           e.g. "auth.login", "access.decision", "ingest.released"
    outcome                EventIdentification/EventOutcomeIndicator:
                           success -> 0, denied -> 4 (minor failure), failure -> 8
    timestamp (record)     EventIdentification/EventDateTime, UTC, set by the log
    actor                  ActiveParticipant/UserID (user name, AE title, or "system")
    roles                  ActiveParticipant/RoleIDCode (the archive's role names)
    source                 ActiveParticipant/NetworkAccessPointID (IP, AE@host, "cli")
    target                 ParticipantObjectIdentification/ParticipantObjectID: a case id
                           or a de-identified study UID, NEVER a source identifier
    detail                 ParticipantObjectIdentification/ParticipantObjectDetail
                           (flat name -> str | int | bool)
    seq, prev, hash        not in A.5: the tamper-evidence chain (see archive.audit.log)

Callers pass only pseudonymous ids (case ids, de-identified UIDs, user names). The guard
below is a cheap last line of defence, not a de-identifier: it refuses anything that
looks like an NHS number (ten digits, optionally grouped 3-3-4) so an identifier passed
by mistake fails closed instead of being written into a log that cannot be edited.
Consequence for callers: pass times as ISO strings, not 10-digit epoch seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from archive.errors import ArchiveError

OUTCOMES = ("success", "denied", "failure")
_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
_DETAIL_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Ten digits not part of a longer digit run, optionally grouped 3-3-4 by space or dash.
# Bounded by non-alphanumerics: a digit run inside a hex id (Orthanc ids, quarantine ids,
# hashes) is part of a random token, not an NHS number, and must not refuse the record
# (it did, at random, for ids such as "ab123456-7890cdef").
_NHS_LIKE = re.compile(r"(?<![0-9A-Za-z])\d{3}[ -]?\d{3}[ -]?\d{4}(?![0-9A-Za-z])")
MAX_VALUE_CHARS = 1024
MAX_DETAIL_ITEMS = 32


class AuditError(ArchiveError):
    """The audit log refused an event or cannot be written; the action must not proceed."""


DetailValue = str | int | bool


@dataclass(frozen=True)
class AuditEvent:
    """One accountable thing that happened: who did what to which case, from where, outcome."""

    action: str
    outcome: str
    actor: str
    roles: tuple[str, ...] = ()
    source: str = "local"
    target: str | None = None
    detail: dict[str, DetailValue] = field(default_factory=dict)

    def to_fields(self) -> dict[str, object]:
        """The validated fields as they go into a record (raises AuditError)."""
        check_event(self)
        return {
            "action": self.action,
            "outcome": self.outcome,
            "actor": self.actor,
            "roles": list(self.roles),
            "source": self.source,
            "target": self.target,
            "detail": dict(self.detail),
        }


def _check_text(name: str, value: str) -> None:
    if len(value) > MAX_VALUE_CHARS:
        raise AuditError(f"audit field {name} is longer than {MAX_VALUE_CHARS} characters.")
    if _NHS_LIKE.search(value):
        # Never echo the value: it may be the identifier we are keeping out.
        raise AuditError(
            f"audit field {name} contains a 10-digit number that looks like an NHS number; "
            "pass only pseudonymous ids (case id, de-identified UID) to the audit log."
        )


def check_event(event: AuditEvent) -> None:
    """Refuse malformed or identifying-looking events (fail closed, never echo values).

    Runs for every record (every HTTP request is one), so the number guard searches all
    text fields at once and only looks field by field to name the culprit."""
    if not isinstance(event.action, str) or not _ACTION.match(event.action):
        raise AuditError("audit action must be a dotted lowercase name such as 'auth.login'.")
    if event.outcome not in OUTCOMES:
        raise AuditError(f"audit outcome must be one of {', '.join(OUTCOMES)}.")
    if not isinstance(event.actor, str) or not event.actor:
        raise AuditError("audit actor must be a non-empty user name, AE title or 'system'.")
    if not isinstance(event.source, str):
        raise AuditError("audit source must be a string (IP, AE@host or 'cli').")
    texts: list[tuple[str, str]] = [("actor", event.actor), ("source", event.source)]
    for role in event.roles:
        if not isinstance(role, str):
            raise AuditError("audit roles must be strings.")
        texts.append(("roles", role))
    if event.target is not None:
        if not isinstance(event.target, str):
            raise AuditError("audit target must be a case id or de-identified UID string.")
        texts.append(("target", event.target))
    if not isinstance(event.detail, dict) or len(event.detail) > MAX_DETAIL_ITEMS:
        raise AuditError(f"audit detail must be a flat dict of at most {MAX_DETAIL_ITEMS} items.")
    for key, value in event.detail.items():
        if not isinstance(key, str) or not _DETAIL_KEY.match(key):
            raise AuditError("audit detail keys must be lowercase names such as 'reason'.")
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            texts.append((f"detail.{key}", str(value)))
        elif isinstance(value, str):
            texts.append((f"detail.{key}", value))
        else:
            raise AuditError(f"audit detail.{key} must be a str, int or bool.")
    for name, value in texts:
        if len(value) > MAX_VALUE_CHARS:
            raise AuditError(f"audit field {name} is longer than {MAX_VALUE_CHARS} characters.")
    # NUL is neither a digit nor a letter: the pattern's boundaries hold at each joint.
    if _NHS_LIKE.search("\0".join(value for _, value in texts)):
        for name, value in texts:
            _check_text(name, value)

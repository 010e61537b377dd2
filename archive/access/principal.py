"""Who is calling: the result of authentication, passed to every decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

# Reasons an authentication fails. All become HTTP 401 for the caller (no hint which);
# the reason goes to the audit log.
FAILURE_REASONS = (
    "no_credentials",
    "malformed",
    "bad_credentials",
    "locked",
    "disabled",
    "account_expired",
    "token_expired",
    "token_revoked",
)


@dataclass(frozen=True)
class Principal:
    """An authenticated named user and what they may be trusted with right now."""

    user: str
    roles: tuple[str, ...]
    trained: bool
    training_expires: date | None = None
    method: str = "basic"  # "basic", "bearer" or "local" (CLI on the home)
    token_id: str | None = None


@dataclass(frozen=True)
class AuthFailure:
    """Authentication failed; `user` is the claimed name when there was one."""

    reason: str
    user: str | None = None

    def __bool__(self) -> bool:  # so that `if result:` means "authenticated"
        return False

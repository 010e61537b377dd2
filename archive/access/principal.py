"""Who is calling: the result of authentication, passed to every decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

# Reasons an authentication fails. All become a refusal for the caller (no hint which,
# except "throttled", which the web answers with 429 and Retry-After); the reason goes to
# the audit log.
FAILURE_REASONS = (
    "no_credentials",
    "malformed",
    "bad_credentials",
    "throttled",
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
    retry_after: int | None = None  # seconds until this client may try again (backoff)
    detail: str = ""  # why the backoff (pair or address), in our own words
    alert: bool = False  # this failure crossed the account's alert threshold

    def __bool__(self) -> bool:  # so that `if result:` means "authenticated"
        return False

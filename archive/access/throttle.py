"""Failed sign-ins slow down the address they come from, never lock out the person.

Design (issue #20 finding 7): a lockout per account lets anybody who knows a name
(personnel names are not secret) lock that person out from anywhere. So failures are
counted per (account, client address) and per client address, each with exponential
backoff after a few free failures; a blocked pair or address is refused *before* the
password is checked (no argon2 work, and a guess made while blocked teaches nothing),
while the same account signs in normally from any other address. There is no
account-wide lockout: guessing one account from many addresses is bounded by each
address's own backoff (and argon2id, 12+ character passwords); past
`account_alert_failures` failures within `forget_after` the account is flagged once
(`account_alert` on that failure's auth.login / web.login audit record) for personnel
to look at, and nothing is locked.

State is in memory, per process (the filter and the web interface of one Orthanc share
it; several nodes each keep their own, which multiplies an attacker's budget by the
number of nodes, not more). It is bounded: the oldest idle entries are dropped first.
Pure bookkeeping with an injected clock (`now` in seconds), so it is tested without
sleeping.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class ThrottlePolicy:
    free_per_account_address: int = 3  # failures before the pair's backoff starts
    free_per_address: int = 10  # failures (any accounts) before the address's backoff
    initial_delay: float = 1.0  # seconds, doubled with each further failure
    max_delay: float = 900.0  # ceiling of one wait
    forget_after: float = 3600.0  # an idle counter starts again from zero
    account_alert_failures: int = 50  # failures on one account (all addresses) to report


@dataclass(frozen=True)
class Refusal:
    """A sign-in refused unchecked: wait `retry_after` seconds; `reason` says why."""

    retry_after: int
    reason: str


@dataclass
class _Counter:
    failures: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


PAIR_REASON = "too many failed sign-ins for this account from this address"
ADDRESS_REASON = "too many failed sign-ins from this address"


class Throttle:
    """Per-(account, address) and per-address counters with exponential backoff."""

    def __init__(self, policy: ThrottlePolicy | None = None) -> None:
        self.policy = policy or ThrottlePolicy()
        self._pairs: dict[tuple[str, str], _Counter] = {}
        self._addresses: dict[str, _Counter] = {}
        self._accounts: dict[str, _Counter] = {}
        self._lock = threading.Lock()

    def _fresh(self, table: dict, key, now: float) -> _Counter:
        counter = table.get(key)
        if counter is None or now - counter.last > self.policy.forget_after:
            counter = _Counter()
            table[key] = counter
        return counter

    def check(self, account: str, address: str, now: float) -> Refusal | None:
        """A Refusal while the pair or the address is in its backoff, else None."""
        with self._lock:
            for counter, reason in (
                (self._pairs.get((account, address)), PAIR_REASON),
                (self._addresses.get(address), ADDRESS_REASON),
            ):
                if counter is not None and now < counter.blocked_until:
                    return Refusal(max(1, math.ceil(counter.blocked_until - now)), reason)
        return None

    def _delay(self, failures: int, free: int) -> float:
        if failures <= free:
            return 0.0
        exponent = min(failures - free - 1, 30)
        return min(self.policy.initial_delay * (2**exponent), self.policy.max_delay)

    def failure(self, account: str, address: str, now: float) -> tuple[Refusal | None, bool]:
        """Count one failed sign-in. Returns (the backoff it starts, if any; True when
        the account just crossed the alert threshold)."""
        p = self.policy
        with self._lock:
            self._evict(now)
            pair = self._fresh(self._pairs, (account, address), now)
            addr = self._fresh(self._addresses, address, now)
            acct = self._fresh(self._accounts, account, now)
            for counter in (pair, addr, acct):
                counter.failures += 1
                counter.last = now
            refusal = None
            for counter, free, reason in (
                (pair, p.free_per_account_address, PAIR_REASON),
                (addr, p.free_per_address, ADDRESS_REASON),
            ):
                delay = self._delay(counter.failures, free)
                if delay:
                    counter.blocked_until = max(counter.blocked_until, now + delay)
                    wait = max(1, math.ceil(counter.blocked_until - now))
                    if refusal is None or wait > refusal.retry_after:
                        refusal = Refusal(wait, reason)
            alert = acct.failures == p.account_alert_failures
            return refusal, alert

    def success(self, account: str, address: str) -> None:
        """A correct sign-in clears its pair's counter (the address keeps its own)."""
        with self._lock:
            self._pairs.pop((account, address), None)

    def _evict(self, now: float) -> None:
        for table in (self._pairs, self._addresses, self._accounts):
            if len(table) < MAX_ENTRIES:
                continue
            idle = sorted(
                (c.last, k) for k, c in table.items() if c.blocked_until <= now
            )  # unblocked first, oldest first
            for _, key in idle[: max(1, len(table) // 10)]:
                del table[key]

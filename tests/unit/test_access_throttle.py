"""The sign-in backoff alone: pairs and addresses, doubling, forgetting, the alert."""

from __future__ import annotations

from archive.access.throttle import ADDRESS_REASON, PAIR_REASON, Throttle, ThrottlePolicy

POLICY = ThrottlePolicy(
    free_per_account_address=2,
    free_per_address=5,
    initial_delay=1.0,
    max_delay=8.0,
    forget_after=100.0,
    account_alert_failures=4,
)


def test_pair_backoff_doubles_to_a_ceiling_and_is_per_pair() -> None:
    t = Throttle(POLICY)
    waits = []
    now = 0.0
    for _ in range(7):
        last = now
        refusal, _ = t.failure("user:a", "10.0.0.1", now)
        waits.append(refusal.retry_after if refusal else 0)
        now += waits[-1]
    assert waits == [0, 0, 1, 2, 4, 8, 8]
    assert t.check("user:a", "10.0.0.1", now - 1).reason == PAIR_REASON
    assert t.check("user:a", "10.0.0.2", now - 1) is None  # another address: free
    # 7 failures from the address (5 free): it waits too, for any account.
    assert t.check("user:b", "10.0.0.1", last + 0.5).reason == ADDRESS_REASON


def test_idle_counters_are_forgotten_and_success_clears_the_pair() -> None:
    t = Throttle(POLICY)
    for _ in range(3):
        t.failure("user:a", "10.0.0.1", 0.0)
    assert t.check("user:a", "10.0.0.1", 0.5) is not None
    refusal, _ = t.failure("user:a", "10.0.0.1", 200.0)  # long after: starts again
    assert refusal is None
    t.success("user:a", "10.0.0.1")
    assert t.failure("user:a", "10.0.0.1", 201.0)[0] is None


def test_account_alert_once_never_a_lock() -> None:
    t = Throttle(POLICY)
    alerts = [t.failure("user:boss", f"10.0.1.{i}", 0.0)[1] for i in range(10)]
    assert alerts.count(True) == 1 and alerts.index(True) == 3
    assert t.check("user:boss", "10.0.9.9", 0.0) is None  # no account-wide refusal

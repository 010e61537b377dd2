"""Exponential backoff for files the archive could not take yet (down, full, busy).

The file stays where it is; only the next attempt moves further away, up to a ceiling,
so a long outage costs a handful of requests per file, not a storm.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    factor: float = 2.0
    ceiling: float = 300.0
    jitter: float = 0.1  # fraction of the delay, so many files do not retry in lockstep

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1 = first retry)."""
        if attempt < 1:
            return 0.0
        base = min(self.ceiling, self.initial * self.factor ** (attempt - 1))
        if self.jitter <= 0:
            return base
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))

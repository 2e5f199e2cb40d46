"""Backoff arithmetic: exponential with full jitter, bounded attempts and a deadline.

    policy = RetryPolicy(max_attempts=4, base_s=0.5, cap_s=20.0)
    delay = policy.delay(attempt=2, rng=random.Random(0), retry_after_s=None)

Pure: the caller sleeps. Full jitter (a uniform draw in [0, min(cap, base * 2^(n-1))])
spreads retries of many workers so they do not hit a recovering provider together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 4
    base_s: float = 0.5
    cap_s: float = 20.0
    deadline_s: float = 300.0

    def delay(self, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.cap_s, self.base_s * 2 ** max(0, attempt - 1))
        jittered = rng.uniform(0.0, ceiling)
        if retry_after_s is not None:
            # The provider said when; add a little jitter so waiters do not stampede.
            return retry_after_s + rng.uniform(0.0, min(1.0, ceiling))
        return jittered

    def may_retry(self, attempt: int, elapsed_s: float, next_delay_s: float) -> bool:
        return attempt < self.max_attempts and elapsed_s + next_delay_s < self.deadline_s

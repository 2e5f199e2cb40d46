"""What a provider account can take now, as one worker last saw it: the input of a tier
pool's choice between deployments (`pipeline.calls.pool`).

    room = limiter.headroom(dep)              # no actor call: the view of the last lease/sync
    room.wait_s(queued_here=3, tokens_each=420)   # seconds a new row would wait for a permit

The cluster-wide part (the account's bucket, its AIMD rate, the rows other workers have
waiting) comes back with every lease and every half-second sync the quota client makes
anyway, so workers on different nodes see the same picture without an actor call per row.
A 429 pauses the account and halves its rate: both show here within one sync.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Headroom:
    pause_s: float = 0.0  # the account is paused (a 429's Retry-After) this much longer
    requests_per_s: float | None = None  # None: no request limit known
    requests_ready: float = 0.0  # permits free now: held by this worker + the account's bucket
    requests_queued: float = 0.0  # rows of other workers waiting for this account
    tokens_per_s: float | None = None  # None: no token limit known
    tokens_ready: float = 0.0
    tokens_queued: float = 0.0
    exhausted: bool = False  # a daily allowance is used up

    def wait_s(self, queued_here: int, tokens_each: int) -> float:
        """Seconds until a new row, behind `queued_here` rows of this worker (and the
        other workers' waiting rows), would get its permits."""
        if self.exhausted:
            return math.inf
        wait = 0.0
        if self.requests_per_s is not None:
            ahead = self.requests_queued + queued_here + 1 - self.requests_ready
            wait = max(wait, _over(ahead, self.requests_per_s))
        if self.tokens_per_s is not None:
            ahead_t = self.tokens_queued + (queued_here + 1) * tokens_each - self.tokens_ready
            wait = max(wait, _over(ahead_t, self.tokens_per_s))
        return self.pause_s + wait


def _over(amount: float, rate: float) -> float:
    if amount <= 0:
        return 0.0
    return amount / rate if rate > 0 else math.inf


UNLIMITED = Headroom()

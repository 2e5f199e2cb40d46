"""A deployment's circuit breaker: skip a deployment that keeps failing, probe it later.

breaker = Breaker(threshold=5, cooldown_s=30.0, clock=time.monotonic)
if breaker.allow(): ...call...; breaker.record(ok)
"""

from __future__ import annotations

from collections.abc import Callable


class Breaker:
    """Per-deployment circuit breaker: open after `threshold` consecutive failed calls,
    skip the deployment for `cooldown_s`, then let one probe through (half-open)."""

    def __init__(self, threshold: int, cooldown_s: float, clock: Callable[[], float]) -> None:
        self.threshold, self.cooldown_s, self.clock = threshold, cooldown_s, clock
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if self.clock() - self.opened_at >= self.cooldown_s and not self.probing:
            self.probing = True
            return True
        return False

    def closed(self) -> bool:
        """Would let a call through now (no probe is taken by asking)."""
        if self.opened_at is None:
            return True
        return self.clock() - self.opened_at >= self.cooldown_s and not self.probing

    def record(self, ok: bool) -> None:
        if ok:
            self.failures, self.opened_at, self.probing = 0, None, False
            return
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.opened_at, self.probing = self.clock(), False

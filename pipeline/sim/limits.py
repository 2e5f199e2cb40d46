"""Per-API-key rate limits, as a provider enforces them: requests and tokens per minute
(smooth token buckets that refill continuously) and requests in flight.

    limiter = SimLimiter(config, clock=fake_clock)
    verdict = limiter.admit("key-a", "gpt-x", tokens=120)
    if verdict.allowed:
        try: ...
        finally: limiter.release("key-a")

Time comes only from the clock passed in, so tests move it instead of waiting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from schemas.sim import KeyLimits, SimConfig

Clock = Callable[[], float]
Denial = Literal["requests", "tokens", "concurrency", "too_large"]


class SimBucket:
    """`capacity` units, refilled at `capacity` per minute; starts full."""

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, capacity: float, now: float) -> None:
        self.capacity = float(capacity)
        self.rate = self.capacity / 60.0
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait_s(self, amount: float) -> float:
        """Seconds until `amount` units are there (0 if they are now)."""
        return max(0.0, (amount - self.level) / self.rate)

    def full_in_s(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)


@dataclass(frozen=True, slots=True)
class RateState:
    """What the rate-limit headers report; a limit of None is unlimited (no headers)."""

    requests_limit: int | None = None
    requests_remaining: int = 0
    requests_reset_s: float = 0.0
    tokens_limit: int | None = None
    tokens_remaining: int = 0
    tokens_reset_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SimVerdict:
    """The answer to one admission: allowed, or denied with why and when to retry."""

    allowed: bool
    state: RateState
    denial: Denial | None = None
    retry_after_s: int = 0


_UNLIMITED = SimVerdict(True, RateState())


class _Buckets:
    __slots__ = ("limits", "requests", "tokens")

    def __init__(self, limits: KeyLimits, now: float) -> None:
        self.limits = limits
        self.requests = SimBucket(limits.rpm, now) if limits.rpm else None
        self.tokens = SimBucket(limits.tpm, now) if limits.tpm else None

    def state(self) -> RateState:
        r, t = self.requests, self.tokens
        return RateState(
            requests_limit=self.limits.rpm,
            requests_remaining=max(0, math.floor(r.level)) if r else 0,
            requests_reset_s=r.full_in_s() if r else 0.0,
            tokens_limit=self.limits.tpm,
            tokens_remaining=max(0, math.floor(t.level)) if t else 0,
            tokens_reset_s=t.full_in_s() if t else 0.0,
        )


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class SimLimiter:
    """Admits or denies requests per API key (and per model when the key says so)."""

    def __init__(self, config: SimConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Buckets] = {}
        self._in_flight: dict[str, int] = {}

    def reconfigure(self, config: SimConfig) -> None:
        """Use new limits; buckets whose limits changed start full, in-flight counts stay."""
        self._config = config

    def in_flight(self, api_key: str) -> int:
        return self._in_flight.get(api_key, 0)

    def _group(self, api_key: str, model: str, limits: KeyLimits, now: float) -> _Buckets:
        slot = (api_key, model if limits.per_model else "")
        group = self._buckets.get(slot)
        if group is None or (group.limits is not limits and group.limits != limits):
            group = self._buckets[slot] = _Buckets(limits, now)
        return group

    def admit(self, api_key: str, model: str, tokens: int) -> SimVerdict:
        """Take one request and `tokens` tokens, or say why not. Allowed -> call `release`."""
        limits = self._config.limits_for(api_key)
        if limits.rpm is None and limits.tpm is None and limits.max_concurrency is None:
            self._in_flight[api_key] = self._in_flight.get(api_key, 0) + 1
            return _UNLIMITED
        now = self._clock()
        group = self._group(api_key, model, limits, now)
        r, t = group.requests, group.tokens
        if r:
            r.refill(now)
        if t:
            t.refill(now)
        if t and tokens > t.capacity:
            return SimVerdict(False, group.state(), "too_large", 0)
        wait_r = r.wait_s(1) if r else 0.0
        wait_t = t.wait_s(tokens) if t else 0.0
        if wait_r > 0 or wait_t > 0:
            denial: Denial = "requests" if wait_r >= wait_t else "tokens"
            return SimVerdict(False, group.state(), denial, _retry_after(max(wait_r, wait_t)))
        in_flight = self._in_flight.get(api_key, 0)
        if limits.max_concurrency is not None and in_flight >= limits.max_concurrency:
            return SimVerdict(False, group.state(), "concurrency", 1)
        if r:
            r.level -= 1
        if t:
            t.level -= tokens
        self._in_flight[api_key] = in_flight + 1
        return SimVerdict(True, group.state())

    def charge(self, api_key: str, model: str, tokens: int) -> None:
        """Take tokens known only after the answer (output of a request without max_tokens)."""
        limits = self._config.limits_for(api_key)
        if limits.tpm is None or tokens <= 0:
            return
        now = self._clock()
        bucket = self._group(api_key, model, limits, now).tokens
        if bucket:
            bucket.refill(now)
            bucket.level -= tokens

    def release(self, api_key: str) -> None:
        """One admitted request of `api_key` is finished."""
        left = self._in_flight.get(api_key, 0) - 1
        if left > 0:
            self._in_flight[api_key] = left
        else:
            self._in_flight.pop(api_key, None)

"""Quota arithmetic: token buckets, AIMD rate control, and the lease book of one provider
account. Pure: the clock is passed in, nothing here knows about Ray or HTTP.

    q = QuotaState(Limits(rpm=600, tpm=100_000), clock=fake_clock)
    g = q.lease("worker-1", requests=8, tokens=8 * 300, slots=0)
    g.requests, g.tokens, g.wait_s          # what may be spent now, or how long to wait

Buckets hold at most about one second of rate, so a whole minute's allowance never goes
out in one burst (the failure of per-clock-minute limiters). A 429 pauses the account
until its Retry-After and halves the rate; successes add it back a step at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas.job import Limits

BURST_S = 1.0  # bucket capacity in seconds of rate
MIN_MULTIPLIER = 0.05
AI_STEP_PER_S = 0.05  # additive increase: +5% of the limit per second of clean operation
# A client refused (its bucket empty) asks again after at least this long, not when the
# next single permit comes: waiting for one permit at a time, each worker asked the actor
# at the account's whole rate (1.1 to 4.3 calls per row measured with 1 to 8 workers,
# 90% of one actor's ceiling). The bucket holds BURST_S of rate, so nothing is lost.
MIN_WAIT_S = 0.05
CLIENT_TIMEOUT_S = 15.0  # a client silent this long is presumed dead; its slots return


@dataclass
class TokenBucket:
    """Continuous refill at `rate` per second up to `capacity`."""

    rate: float
    capacity: float
    level: float
    updated: float

    @classmethod
    def full(cls, rate: float, capacity: float, now: float) -> TokenBucket:
        return cls(rate, capacity, capacity, now)

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def take_up_to(self, n: float, now: float) -> int:
        self.refill(now)
        got = int(min(n, math.floor(self.level + 1e-9)))
        if got > 0:
            self.level -= got
        return max(0, got)

    def give_back(self, n: float) -> None:
        self.level = min(self.capacity, self.level + max(0.0, n))

    def time_until(self, n: float, now: float) -> float:
        self.refill(now)
        missing = min(n, self.capacity) - self.level
        return 0.0 if missing <= 0 else missing / self.rate if self.rate > 0 else math.inf

    def set_rate(self, rate: float, capacity: float, now: float) -> None:
        self.refill(now)
        self.rate, self.capacity = rate, capacity
        self.level = min(self.level, capacity)


@dataclass(frozen=True)
class Grant:
    requests: int
    tokens: int
    slots: int
    wait_s: float  # when nothing could be granted: how long until asking again helps
    paused_until: float  # clock value; clients drop held permits while paused
    unlimited_requests: bool
    unlimited_tokens: bool
    exhausted: str | None = None  # e.g. 'tokens_per_day': no more today


@dataclass
class _Client:
    slots: int = 0
    last_seen: float = 0.0
    waiting: int = 0  # rows waiting for permits in that worker, as it last said
    waiting_tokens: int = 0


@dataclass
class QuotaState:
    limits: Limits
    clock: Callable[[], float]
    multiplier: float = 1.0
    paused_until: float = 0.0
    rate_limited: int = 0
    pauses: int = 0
    granted_requests: int = 0
    slots_used: int = 0
    day_tokens: int = 0
    day_index: int = -1
    discovered: dict[str, int] = field(default_factory=dict)
    clients: dict[str, _Client] = field(default_factory=dict)
    requests: TokenBucket | None = None
    tokens: TokenBucket | None = None

    def __post_init__(self) -> None:
        self._rebuild()

    # --- limits -----------------------------------------------------------------------

    def rpm(self) -> int | None:
        return self.limits.rpm or self.discovered.get("rpm")

    def tpm(self) -> int | None:
        return self.limits.tpm or self.discovered.get("tpm")

    def _rebuild(self) -> None:
        now = self.clock()
        for name, per_min in (("requests", self.rpm()), ("tokens", self.tpm())):
            bucket: TokenBucket | None = getattr(self, name)
            if per_min is None:
                setattr(self, name, None)
                continue
            rate = per_min / 60.0 * self.multiplier
            cap = max(1.0, rate * BURST_S)
            if bucket is None:
                setattr(self, name, TokenBucket.full(rate, cap, now))
            else:
                bucket.set_rate(rate, cap, now)

    def configure(self, limits: Limits) -> None:
        if limits != self.limits:
            self.limits = limits
            self._rebuild()

    # --- leasing ----------------------------------------------------------------------

    def lease(
        self,
        client: str,
        *,
        requests: int,
        tokens: int,
        slots: int,
        largest_request_tokens: int = 0,
    ) -> Grant:
        now = self.clock()
        self._reap(now)
        c = self.clients.setdefault(client, _Client())
        c.last_seen = now
        exhausted = self._day_check(now)
        if now < self.paused_until or exhausted:
            return self._grant(0, 0, 0, max(0.0, self.paused_until - now), exhausted)
        if self.tokens is not None and largest_request_tokens > self.tokens.capacity:
            # One request larger than a second's worth of tokens: let the bucket hold it.
            self.tokens.capacity = float(largest_request_tokens)
        got_slots = 0
        if self.limits.max_concurrency is not None and slots > 0:
            got_slots = max(0, min(slots, self.limits.max_concurrency - self.slots_used))
            self.slots_used += got_slots
            c.slots += got_slots
        got_req = requests if self.requests is None else self.requests.take_up_to(requests, now)
        got_tok = tokens if self.tokens is None else 0
        # A client of an account without an rpm limit asks for tokens only (requests=0).
        wants_tokens = got_req > 0 or (self.requests is None and tokens > 0)
        if self.tokens is not None and wants_tokens:
            got_tok = self.tokens.take_up_to(tokens, now)
            if got_tok < min(tokens, largest_request_tokens or 1):
                # Not enough tokens for even one waiting request: hand the requests back.
                if self.requests is not None:
                    self.requests.give_back(got_req)
                self.tokens.give_back(got_tok)
                got_req = got_tok = 0
            elif requests > 0 and tokens > 0:
                # Requests without the tokens to send them are no use: keep the pair.
                per_request = tokens / requests
                usable = max(1, int(got_tok // per_request))
                if usable < got_req:
                    if self.requests is not None:
                        self.requests.give_back(got_req - usable)
                    got_req = usable
        self.granted_requests += got_req
        self.day_tokens += got_tok if self.limits.tokens_per_day else 0
        wait = 0.0
        starved = got_req == 0 and requests > 0
        if starved or (self.tokens is not None and got_tok == 0 and tokens > 0):
            wait = max(
                self.requests.time_until(1, now) if self.requests else 0.0,
                self.tokens.time_until(largest_request_tokens or 1, now) if self.tokens else 0.0,
                MIN_WAIT_S,
            )
        return self._grant(got_req, got_tok, got_slots, wait, None)

    def _grant(self, req: int, tok: int, slots: int, wait: float, exhausted: str | None) -> Grant:
        return Grant(
            requests=req,
            tokens=tok,
            slots=slots,
            wait_s=wait,
            paused_until=self.paused_until,
            unlimited_requests=self.requests is None,
            unlimited_tokens=self.tokens is None,
            exhausted=exhausted,
        )

    def give_back(self, client: str, *, requests: int = 0, tokens: int = 0, slots: int = 0) -> None:
        """Unused permits and settled token reservations (reserved minus used) return."""
        now = self.clock()
        c = self.clients.setdefault(client, _Client())
        c.last_seen = now
        if self.requests is not None:
            self.requests.refill(now)
            self.requests.give_back(requests)
        if self.tokens is not None:
            self.tokens.refill(now)
            self.tokens.give_back(tokens)
        if self.limits.tokens_per_day:
            self.day_tokens = max(0, self.day_tokens - tokens)
        freed = min(slots, c.slots)
        c.slots -= freed
        self.slots_used -= freed

    def report_waiting(self, client: str, requests: int, tokens: int) -> None:
        """A client's rows waiting for permits: what other workers see as queued here."""
        c = self.clients.setdefault(client, _Client())
        c.waiting, c.waiting_tokens, c.last_seen = max(0, requests), max(0, tokens), self.clock()

    def view(self, client: str) -> dict[str, float | None]:
        """The account as a tier pool weighs it: rates after AIMD, what the buckets hold
        now, and the rows the other clients have waiting (`pipeline.limits.headroom`)."""
        now = self.clock()
        others = [c for name, c in self.clients.items() if name != client]
        out: dict[str, float | None] = {
            "requests_per_s": None,
            "requests_ready": 0.0,
            "tokens_per_s": None,
            "tokens_ready": 0.0,
            "requests_queued": float(sum(c.waiting for c in others)),
            "tokens_queued": float(sum(c.waiting_tokens for c in others)),
        }
        for name, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is not None:
                bucket.refill(now)
                out[f"{name}_per_s"] = bucket.rate
                out[f"{name}_ready"] = bucket.level
        return out

    def _reap(self, now: float) -> None:
        for name, c in list(self.clients.items()):
            if now - c.last_seen > CLIENT_TIMEOUT_S:
                self.slots_used -= c.slots
                del self.clients[name]

    def _day_check(self, now: float) -> str | None:
        if not self.limits.tokens_per_day:
            return None
        day = int(now // 86400)
        if day != self.day_index:
            self.day_index, self.day_tokens = day, 0
        return "tokens_per_day" if self.day_tokens >= self.limits.tokens_per_day else None

    # --- feedback (AIMD) ----------------------------------------------------------------

    def on_success(self, count: int, seconds: float) -> None:
        """`count` calls succeeded over the last `seconds`: climb back toward the limit."""
        if count <= 0 or self.multiplier >= 1.0:
            return
        self.multiplier = min(1.0, self.multiplier + AI_STEP_PER_S * max(seconds, 0.0))
        self._rebuild()

    def on_rate_limited(
        self, retry_after_s: float | None, headers: dict[str, str] | None = None
    ) -> None:
        now = self.clock()
        self.rate_limited += 1
        if headers:
            self.learn(headers)
        if now >= self.paused_until:  # one 429 storm counts once
            self.pauses += 1
            self.multiplier = max(MIN_MULTIPLIER, self.multiplier * 0.5)
            if self.rpm() is None and self.granted_requests:
                # Unknown limit: start from a guess and let AIMD find the real one.
                self.discovered["rpm"] = max(1, self.granted_requests)
            self._rebuild()
        self.paused_until = max(self.paused_until, now + (retry_after_s if retry_after_s else 1.0))
        for bucket in (self.requests, self.tokens):
            if bucket is not None:
                bucket.level = 0.0

    def learn(self, headers: dict[str, str]) -> None:
        """Adopt limits the provider announces, for limits the spec left unset."""
        changed = False
        for key, header in (
            ("rpm", "x-ratelimit-limit-requests"),
            ("tpm", "x-ratelimit-limit-tokens"),
        ):
            raw = headers.get(header) or headers.get(
                "anthropic-ratelimit-" + ("requests" if key == "rpm" else "tokens") + "-limit"
            )
            if raw and getattr(self.limits, key) is None:
                try:
                    value = int(float(raw))
                except ValueError:
                    continue
                if value > 0 and self.discovered.get(key) != value:
                    self.discovered[key] = value
                    changed = True
        if changed:
            self._rebuild()

    def status(self) -> dict[str, float | int | None]:
        return {
            "rpm": self.rpm(),
            "tpm": self.tpm(),
            "multiplier": round(self.multiplier, 4),
            "paused_until": self.paused_until,
            "rate_limited": self.rate_limited,
            "pauses": self.pauses,
            "granted_requests": self.granted_requests,
            "slots_used": self.slots_used,
            "clients": len(self.clients),
        }

"""Token-bucket and AIMD arithmetic of the quota book, on a fake clock (no Ray)."""

from __future__ import annotations

import pytest

from pipeline.limits.quota import MIN_WAIT_S, QuotaState, TokenBucket
from schemas.job import Limits


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def drain(q: QuotaState, clock: Clock, seconds: float, step: float = 0.05, tokens: int = 0) -> int:
    """Ask for permits as fast as possible for `seconds`; return how many were granted."""
    got = 0
    end = clock.t + seconds
    while clock.t < end:
        g = q.lease("w", requests=64, tokens=64 * tokens, slots=0, largest_request_tokens=tokens)
        got += g.requests
        clock.t += step
    return got


def test_bucket_refills_continuously_and_caps() -> None:
    b = TokenBucket.full(rate=10.0, capacity=10.0, now=0.0)
    assert b.take_up_to(25, 0.0) == 10
    assert b.take_up_to(5, 0.25) == 2  # 2.5 refilled
    assert b.time_until(1, 0.25) == pytest.approx(0.05)
    assert b.take_up_to(100, 100.0) == 10  # never more than capacity


def test_rpm_is_paced_smoothly_not_in_minute_bursts() -> None:
    clock = Clock()
    q = QuotaState(Limits(rpm=600), clock=clock)
    first_second = drain(q, clock, 1.0)
    assert first_second <= 10 + 10  # at most one second of burst plus one of rate
    total = first_second + drain(q, clock, 59.0)
    assert 600 <= total <= 600 + 10  # a minute's worth, plus at most the 1 s burst


def test_tpm_binds_when_requests_are_large() -> None:
    clock = Clock()
    q = QuotaState(Limits(rpm=6000, tpm=60_000), clock=clock)  # 1,000 tokens/s
    got = drain(q, clock, 10.0, tokens=500)
    assert 18 <= got <= 22  # 2 requests of 500 tokens per second


def test_concurrency_slots_are_shared_and_returned() -> None:
    clock = Clock()
    q = QuotaState(Limits(max_concurrency=5), clock=clock)
    a = q.lease("a", requests=4, tokens=0, slots=4)
    b = q.lease("b", requests=4, tokens=0, slots=4)
    assert (a.slots, b.slots) == (4, 1)
    q.give_back("a", slots=4)
    assert q.lease("b", requests=3, tokens=0, slots=3).slots == 3


def test_dead_client_slots_are_reclaimed() -> None:
    clock = Clock()
    q = QuotaState(Limits(max_concurrency=2), clock=clock)
    assert q.lease("dies", requests=2, tokens=0, slots=2).slots == 2
    assert q.lease("other", requests=1, tokens=0, slots=1).slots == 0
    clock.t += 60
    assert q.lease("other", requests=1, tokens=0, slots=1).slots == 1


def test_429_pauses_halves_and_climbs_back() -> None:
    clock = Clock()
    q = QuotaState(Limits(rpm=600), clock=clock)
    q.on_rate_limited(retry_after_s=2.0)
    g = q.lease("w", requests=5, tokens=0, slots=0)
    assert g.requests == 0 and g.paused_until == pytest.approx(clock.t + 2.0)
    assert q.multiplier == 0.5
    q.on_rate_limited(retry_after_s=2.0)  # same storm: no second halving
    assert q.multiplier == 0.5 and q.pauses == 1
    clock.t += 2.5
    assert drain(q, clock, 10.0) <= 5 * 10 + 5 + 5  # half rate
    for _ in range(10):
        q.on_success(50, 1.0)
    assert q.multiplier == 1.0


def test_unknown_limits_are_learned_from_headers_and_429s() -> None:
    clock = Clock()
    q = QuotaState(Limits(), clock=clock)
    assert q.lease("w", requests=1000, tokens=0, slots=0).unlimited_requests
    q.learn({"x-ratelimit-limit-requests": "120"})
    assert q.rpm() == 120 and not q.lease("w", requests=1, tokens=0, slots=0).unlimited_requests
    q2 = QuotaState(Limits(), clock=clock)
    q2.lease("w", requests=300, tokens=0, slots=0)
    q2.on_rate_limited(retry_after_s=1.0)
    assert q2.rpm() == 300 and q2.multiplier == 0.5


def test_tokens_per_day_is_exhausted_until_the_next_day() -> None:
    clock = Clock()
    clock.t = 86400 * 10 + 100
    q = QuotaState(Limits(tokens_per_day=1000), clock=clock)
    assert q.lease("w", requests=1, tokens=800, slots=0, largest_request_tokens=800).tokens == 800
    q.lease("w", requests=1, tokens=300, slots=0, largest_request_tokens=300)
    assert q.lease("w", requests=1, tokens=10, slots=0).exhausted == "tokens_per_day"
    clock.t += 86400
    assert q.lease("w", requests=1, tokens=10, slots=0).exhausted is None


def test_token_only_limits_grant_tokens_and_then_ask_to_wait() -> None:
    # An account limited by tpm alone: clients lease tokens with no request permits.
    clock = Clock()
    q = QuotaState(Limits(tpm=6000), clock=clock)  # 100 tokens/s
    g = q.lease("w", requests=0, tokens=90, slots=0, largest_request_tokens=90)
    assert g.tokens == 90 and g.wait_s == 0.0
    empty = q.lease("w", requests=0, tokens=90, slots=0, largest_request_tokens=90)
    assert empty.tokens == 0 and empty.wait_s > 0  # never a busy loop


def test_a_refused_client_waits_for_a_batch_not_for_the_next_single_permit() -> None:
    """At 12,000 rpm the next permit comes in 5 ms; a worker told to come back then asked
    the actor once per row or more. It is told to come back in MIN_WAIT_S, when the
    bucket (one second of rate) holds a batch, so no capacity is lost."""
    clock = Clock()
    q = QuotaState(Limits(rpm=12_000), clock=clock)  # 200 requests/s, 200 in the bucket
    assert q.lease("w", requests=200, tokens=0, slots=0).requests == 200
    refused = q.lease("w", requests=64, tokens=0, slots=0)
    assert refused.requests == 0 and refused.wait_s >= MIN_WAIT_S
    clock.t += refused.wait_s
    assert q.lease("w", requests=64, tokens=0, slots=0).requests >= 10

"""Rate-limit arithmetic and header formats, driven by a fake clock."""

from __future__ import annotations

import pytest

from pipeline.sim.limits import SimLimiter
from pipeline.sim.wire import FORMATS, go_duration, rfc3339
from schemas.sim import KeyLimits, SimConfig


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(
    rpm: int | None = None,
    tpm: int | None = None,
    max_concurrency: int | None = None,
    per_model: bool = False,
) -> tuple[SimLimiter, FakeClock]:
    clock = FakeClock()
    limits = KeyLimits(rpm=rpm, tpm=tpm, max_concurrency=max_concurrency, per_model=per_model)
    return SimLimiter(SimConfig(default_limits=limits), clock), clock


def take(lim: SimLimiter, key: str = "k", model: str = "m", tokens: int = 1) -> bool:
    verdict = lim.admit(key, model, tokens)
    if verdict.allowed:
        lim.release(key)
    return verdict.allowed


def test_rpm_allows_the_limit_then_refills_smoothly() -> None:
    lim, clock = limiter(rpm=6)
    assert all(take(lim) for _ in range(6))
    verdict = lim.admit("k", "m", 1)
    assert not verdict.allowed and verdict.denial == "requests"
    assert verdict.retry_after_s == 10  # one request every 60/6 s
    assert verdict.state.requests_remaining == 0
    assert verdict.state.requests_reset_s == pytest.approx(60.0)
    clock.now += 9.9
    assert not take(lim)
    clock.now += 0.1
    assert take(lim)
    assert not take(lim)  # one came back, not the whole minute


def test_tpm_counts_tokens_and_rejects_requests_larger_than_the_limit() -> None:
    lim, clock = limiter(tpm=1000)
    assert take(lim, tokens=600)
    verdict = lim.admit("k", "m", 600)
    assert not verdict.allowed and verdict.denial == "tokens"
    assert verdict.retry_after_s == 12  # 200 tokens missing at 1000/60 per s
    assert verdict.state.tokens_remaining == 400
    assert lim.admit("k", "m", 1001).denial == "too_large"
    clock.now += 12
    assert take(lim, tokens=600)


def test_keys_have_their_own_buckets_and_per_model_splits_them() -> None:
    lim, _ = limiter(rpm=1)
    assert take(lim, key="a") and take(lim, key="b")
    assert not take(lim, key="a", model="other")
    per_model, _ = limiter(rpm=1, per_model=True)
    assert take(per_model, model="x") and take(per_model, model="y")
    assert not take(per_model, model="x")


def test_concurrency_counts_requests_in_flight() -> None:
    lim, _ = limiter(max_concurrency=2)
    assert lim.admit("k", "m", 1).allowed and lim.admit("k", "m", 1).allowed
    verdict = lim.admit("k", "m", 1)
    assert verdict.denial == "concurrency" and verdict.retry_after_s == 1
    assert lim.in_flight("k") == 2
    lim.release("k")
    assert lim.admit("k", "m", 1).allowed


def test_listed_keys_get_their_own_limits_and_reconfigure_applies() -> None:
    clock = FakeClock()
    config = SimConfig(default_limits=KeyLimits(rpm=1), limits={"vip": KeyLimits()})
    lim = SimLimiter(config, clock)
    assert all(take(lim, key="vip") for _ in range(100))
    assert take(lim, key="anonymous") and not take(lim, key="anonymous")
    lim.reconfigure(SimConfig())
    assert take(lim, key="anonymous")


def test_duration_and_timestamp_formats() -> None:
    assert go_duration(0) == "0s"
    assert go_duration(0.02) == "20ms"
    assert go_duration(1) == "1s"
    assert go_duration(90.5) == "1m30.5s"
    assert go_duration(360) == "6m0s"
    assert go_duration(3600) == "1h0m0s"
    assert rfc3339(1_700_000_000.2) == "2023-11-14T22:13:21Z"


def test_rate_headers_in_both_formats() -> None:
    lim, _ = limiter(rpm=60, tpm=6000)
    state = lim.admit("k", "m", 100).state
    openai = FORMATS["openai"].rate_headers(state, 1_700_000_000)
    assert openai == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "5900",
        "x-ratelimit-reset-tokens": "1s",
    }
    anthropic = FORMATS["anthropic"].rate_headers(state, 1_700_000_000)
    assert anthropic["anthropic-ratelimit-requests-limit"] == "60"
    assert anthropic["anthropic-ratelimit-tokens-remaining"] == "5900"
    assert anthropic["anthropic-ratelimit-requests-reset"] == "2023-11-14T22:13:21Z"
    unlimited, _ = limiter()
    assert FORMATS["openai"].rate_headers(unlimited.admit("k", "m", 1).state, 0) == {}

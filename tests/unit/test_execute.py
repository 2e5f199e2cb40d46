"""Retries, fallback and error rows for one row, with a scripted provider (no network)."""

from __future__ import annotations

import asyncio
import pickle
import random
from collections.abc import Sequence

import pytest

from jobs.base import get_job_kind
from pipeline.calls.execute import RowExecutor
from pipeline.calls.retry import RetryPolicy
from pipeline.errors import (
    AuthFailed,
    BadRequest,
    ProviderUnavailable,
    RateLimited,
    TierlineError,
    redact,
)
from pipeline.limits.limiter import LocalLimiter
from pipeline.providers.base import ChatRequest, ChatResponse, Usage
from schemas.job import ClassifyTask, Deployment

KIND = get_job_kind(ClassifyTask(kind="classify", labels=["billing", "technical", "other"]))


class Scripted:
    """Answers from a script: an exception to raise or a text to return, per call."""

    def __init__(self, name: str, script: Sequence[str | TierlineError]) -> None:
        self.name = name
        self.script = list(script)
        self.calls: list[ChatRequest] = []

    async def complete(self, session: object, request: ChatRequest) -> ChatResponse:
        self.calls.append(request)
        step = self.script.pop(0) if self.script else "billing"
        if isinstance(step, TierlineError):
            raise step
        return ChatResponse(text=step, usage=Usage(100, 2), model=request.model)


def run(providers: dict[str, Scripted], tier_deps: list[str], policy: RetryPolicy | None = None):  # type: ignore[no-untyped-def]
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)

    async def go():  # type: ignore[no-untyped-def]
        ex = RowExecutor(
            KIND,
            providers,  # type: ignore[arg-type]
            {"cheap": [Deployment.parse(d) for d in tier_deps]},
            session=None,  # type: ignore[arg-type]
            limiter=LocalLimiter({}),
            policy=policy or RetryPolicy(max_attempts=3, base_s=1.0, cap_s=8.0),
            sleep=fake_sleep,
            rng=random.Random(1),
        )
        return await ex.run("r1", "I was charged twice", "cheap", 50)

    return asyncio.run(go()), slept


def test_transient_errors_are_retried_with_backoff_then_succeed() -> None:
    p = Scripted(
        "a",
        [ProviderUnavailable("HTTP 503"), RateLimited("HTTP 429", retry_after_s=2.0), "billing"],
    )
    out, slept = run({"a": p}, ["a/m1"])
    assert out.ok and out.output == "billing" and out.attempts == 3
    assert len(slept) == 2 and 0 <= slept[0] <= 1.0 and slept[1] >= 2.0  # Retry-After honoured
    assert [c.call_status for c in out.calls] == ["ok"]  # only the answered call is billed


def test_exhausted_deployment_falls_back_to_the_next_in_tier() -> None:
    a = Scripted("a", [ProviderUnavailable("HTTP 500")] * 3)
    b = Scripted("b", ["technical"])
    out, _ = run({"a": a, "b": b}, ["a/m1", "b/m2"])
    assert out.ok and (out.provider, out.model, out.output) == ("b", "m2", "technical")
    assert len(a.calls) == 3 and len(b.calls) == 1


def test_auth_failure_is_not_retried_and_falls_back() -> None:
    a = Scripted("a", [AuthFailed("HTTP 401")])
    b = Scripted("b", ["billing"])
    out, slept = run({"a": a, "b": b}, ["a/m1", "b/m2"])
    assert out.ok and out.provider == "b" and len(a.calls) == 1 and not slept


def test_bad_request_is_an_error_row_at_once() -> None:
    a = Scripted("a", [BadRequest("HTTP 400: context too long")])
    b = Scripted("b", ["billing"])
    out, _ = run({"a": a, "b": b}, ["a/m1", "b/m2"])
    assert not out.ok and out.error_type == "bad_request" and not b.calls


def test_invalid_output_is_billed_and_becomes_an_error_row() -> None:
    out, _ = run({"a": Scripted("a", ["pineapple"])}, ["a/m1"])
    assert not out.ok and out.error_type == "invalid_output" and "billing" in (out.message or "")
    assert [c.call_status for c in out.calls] == ["invalid_output"]


def test_all_attempts_failing_gives_the_last_error_type() -> None:
    out, _ = run({"a": Scripted("a", [ProviderUnavailable("HTTP 503")] * 5)}, ["a/m1"])
    assert not out.ok and out.error_type == "provider_unavailable" and out.attempts == 3


def test_errors_pickle_and_redact() -> None:
    err = RateLimited("openai: HTTP 429 Authorization: Bearer sk-abcdefghijkl", retry_after_s=3)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is RateLimited and back.retry_after_s == 3.0
    assert "sk-abcdefghijkl" not in str(back)
    assert "hunter2" not in redact("https://user:hunter2@host/v1?api_key=zzz")


@pytest.mark.parametrize("attempt", [1, 2, 5, 10])
def test_backoff_is_bounded_full_jitter(attempt: int) -> None:
    p = RetryPolicy(base_s=0.5, cap_s=4.0)
    rng = random.Random(0)
    draws = [p.delay(attempt, rng) for _ in range(200)]
    assert max(draws) <= min(4.0, 0.5 * 2 ** (attempt - 1)) and min(draws) >= 0

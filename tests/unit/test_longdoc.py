from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pipeline.calls.outcome import CallRecord
from pipeline.longdoc.mapreduce import (
    CallResult,
    DocOutcome,
    DocPlan,
    StepRequest,
    TierOption,
    choose_plan,
    estimate_calls,
    prepare_document,
    summarise_document,
)
from pipeline.providers.base import Usage
from schemas.prices import ModelPrice


def words(text: str) -> int:
    return len(text.split())


def by_words(text: str, model: str) -> int:
    return words(text)


def price(inp: float, out: float, window: int) -> ModelPrice:
    return ModelPrice(
        input_per_mtok=inp,
        output_per_mtok=out,
        context_window=window,
        max_output_tokens=min(window, 4096),
        provider_family="openai",
    )


def document(paragraphs: int = 40) -> str:
    return "\n\n".join(
        " ".join(f"Para {p} sentence {s} says thing {p * 10 + s} clearly." for s in range(5))
        for p in range(paragraphs)
    )  # 8 words a sentence, 40 a paragraph


SMALL = TierOption("cheap", "small-model", price(0.10, 0.40, 800))


def plan_for(text: str, option: TierOption = SMALL, **kw: object) -> DocPlan:
    return choose_plan(
        words(text),
        option.tier,
        [option],
        max_words=20,
        count=by_words,
        **kw,  # type: ignore[arg-type]
    )


class FakeModel:
    """Answers like the simulator: the first `limit` words of the user text."""

    def __init__(self, fail: Callable[[StepRequest], bool] = lambda r: False) -> None:
        self.fail = fail
        self.requests: list[StepRequest] = []
        self.in_flight = self.max_in_flight = 0

    async def __call__(self, req: StepRequest) -> CallResult:
        self.requests.append(req)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        usage = Usage(req.input_tokens, 15)
        if self.fail(req):
            return CallResult(
                ok=False, error_type="rate_limited", message="HTTP 429", tier=req.tier
            )
        text = " ".join(req.messages[-1].content.split()[:15])
        return CallResult(True, text, usage, "fake", "small-model", req.tier)


def run(text: str, plan: DocPlan, model: FakeModel, **kw: object) -> DocOutcome:
    return asyncio.run(
        summarise_document("doc-1", text, plan, model, count=words, **kw)  # type: ignore[arg-type]
    )


def test_a_long_document_is_one_outcome_with_every_call_attributed() -> None:
    text = document()  # 1,600 words against an 800-token window
    plan = plan_for(text)
    assert plan.mode == "chunked" and plan.chunk_tokens < 800
    model = FakeModel()
    out = run(text, plan, model)
    assert out.ok and out.id == "doc-1" and out.output
    assert out.error_type is None
    maps = [r for r in out.records if r.step == "map"]
    reduces = [r for r in out.records if r.step == "reduce"]
    assert len(maps) == out.chunks >= 3
    assert sorted(r.chunk for r in maps) == list(range(out.chunks))
    assert reduces and all(r.level >= 1 for r in reduces)
    assert len(out.records) == len(model.requests)
    assert all(r.call_status == "ok" and r.tier == "cheap" for r in out.records)
    # every map request fitted the window, with its answer budget
    assert all(r.input_tokens + r.max_tokens <= 800 for r in model.requests)


def test_map_calls_run_concurrently_but_bounded() -> None:
    text = document(80)
    model = FakeModel()
    out = run(text, plan_for(text), model, max_concurrency=3)
    assert out.ok and out.chunks > 3
    assert model.max_in_flight == 3


def test_a_failed_map_step_is_one_error_naming_the_step_and_chunk() -> None:
    text = document()
    model = FakeModel(fail=lambda r: r.step == "map" and r.chunk == 2)
    out = run(text, plan_for(text), model, max_concurrency=1)
    assert not out.ok and out.output is None
    assert out.error_type == "map_failed" and out.cause == "rate_limited"
    assert out.message is not None and "map step failed on chunk 3 of" in out.message
    assert "HTTP 429" in out.message
    assert not any(r.step == "reduce" for r in out.records)
    assert len(model.requests) == 3  # no new map call starts after the failure


def test_a_failed_reduce_step_is_one_error() -> None:
    text = document()
    out = run(text, plan_for(text), FakeModel(fail=lambda r: r.step == "reduce"))
    assert not out.ok and out.error_type == "reduce_failed"
    assert out.message is not None and out.message.startswith("reduce step failed at level 1")
    assert out.records and all(r.step == "map" for r in out.records)


def test_a_failed_direct_call_keeps_its_error_type() -> None:
    text = "A short note. Nothing more."
    plan = plan_for(text)
    assert plan.mode == "direct"
    out = run(text, plan, FakeModel(fail=lambda r: True))
    assert not out.ok and out.error_type == "rate_limited" and out.cause is None
    assert out.message is not None and out.message.startswith("direct step failed")


def test_a_call_that_raises_fails_only_its_document() -> None:
    async def broken(req: StepRequest) -> CallResult:
        raise RuntimeError("bug")

    text = document()
    out = run(text, plan_for(text), broken)  # type: ignore[arg-type]
    assert out.error_type == "map_failed" and out.cause == "internal_error"


def test_small_reduce_budget_recurses_over_several_levels() -> None:
    text = document(200)  # 8,000 words, ~14 chunks; a reduce call takes ~3 summaries
    option = TierOption("cheap", "small-model", price(0.1, 0.4, 800))
    plan = plan_for(text, option)
    from dataclasses import replace

    plan = replace(plan, reduce_tokens=60)
    out = run(text, plan, FakeModel())
    assert out.ok and out.levels >= 2
    last = max(r.level for r in out.records)
    assert [r.step for r in out.records if r.level == last] == ["reduce"]


def test_cached_answers_and_billed_retries_become_records() -> None:
    text = document()

    async def call(req: StepRequest) -> CallResult:
        if req.step == "map" and req.chunk == 0:
            billed = (
                CallRecord("p", "small-model", "cheap", 700, 30, "invalid_output", 1),
                CallRecord("p", "small-model", "cheap", 700, 12, "ok", 2),
            )
            return CallResult(
                True, "fine.", Usage(700, 12), "p", "small-model", "cheap", calls=billed
            )
        return CallResult(True, "ok.", Usage(10, 2), "p", "small-model", "cheap", cached=True)

    out = run(text, plan_for(text), call)  # type: ignore[arg-type]
    statuses = [(r.step, r.chunk, r.call_status) for r in out.records]
    assert statuses[:2] == [("map", 0, "invalid_output"), ("map", 0, "ok")]
    assert all(s == "cached" for _, _, s in statuses[2:])


def test_prepare_is_deterministic_for_batched_cache_lookups() -> None:
    text = document()
    plan = plan_for(text)
    a = prepare_document("d", text, plan, count=words)
    b = prepare_document("d", text, plan, count=words)
    assert a == b and len(a.requests) >= 3
    assert all("in at most 20 words" in r.messages[0].content for r in a.requests)


# --- choosing a plan -----------------------------------------------------------------------

CHEAP_SMALL = TierOption("cheap", "cheap-16k", price(0.50, 1.50, 16_385))
MID_LONG = TierOption("mid", "mid-128k", price(0.15, 0.60, 128_000))
MID_PRICEY = TierOption("mid", "mid-128k", price(3.00, 15.0, 128_000))
FLAGSHIP = TierOption("flagship", "big-128k", price(2.50, 10.0, 128_000))


def test_a_document_that_fits_stays_on_its_routed_tier() -> None:
    plan = choose_plan(5_000, "cheap", [CHEAP_SMALL, MID_LONG, FLAGSHIP], max_words=60)
    assert (plan.mode, plan.tier) == ("direct", "cheap")


def test_prefers_one_long_context_call_when_it_is_cheaper() -> None:
    plan = choose_plan(60_000, "cheap", [CHEAP_SMALL, MID_LONG, FLAGSHIP], max_words=60)
    assert (plan.mode, plan.tier) == ("direct", "mid")
    assert {(m, t) for m, t, _ in plan.considered} >= {("chunked", "cheap"), ("direct", "mid")}
    chunked = next(usd for m, t, usd in plan.considered if m == "chunked")
    assert plan.forecast_usd < chunked


def test_prefers_chunking_when_it_is_cheaper() -> None:
    plan = choose_plan(60_000, "cheap", [CHEAP_SMALL, MID_PRICEY], max_words=60)
    assert (plan.mode, plan.tier) == ("chunked", "cheap")
    assert plan.forecast_calls > 2 and plan.chunk_tokens < 16_385


def test_without_upgrades_a_long_document_is_chunked_on_its_tier() -> None:
    plan = choose_plan(60_000, "cheap", [CHEAP_SMALL, MID_LONG], max_words=60, allow_upgrade=False)
    assert (plan.mode, plan.tier) == ("chunked", "cheap")


def test_unknown_tier_and_impossible_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="routed tier"):
        choose_plan(100, "mid", [CHEAP_SMALL], max_words=60)
    tiny = TierOption("cheap", "tiny", price(0.1, 0.1, 150))
    with pytest.raises(ValueError, match="fits no tier"):
        choose_plan(5_000, "cheap", [tiny], max_words=60)


def test_estimate_calls_accounts_for_chunking() -> None:
    assert estimate_calls(1_000, 16_385, 60)[:2] == (0, 0)
    n_map, n_reduce, tokens_in, tokens_out = estimate_calls(60_000, 16_385, 60)
    assert n_map == 5 and n_reduce == 1
    assert tokens_in > 60_000 and tokens_out > 5 * 60
    assert estimate_calls(2_000_000, 16_385, 60).n_reduce == 1  # 148 summaries fit one call
    assert estimate_calls(5_000_000, 16_385, 60).n_reduce >= 3  # two levels


def test_estimate_matches_what_a_run_does() -> None:
    text = document(120)
    plan = plan_for(text)
    out = run(text, plan, FakeModel())
    assert out.ok
    assert abs(plan.forecast_calls - len(out.records)) <= max(2, len(out.records) // 5)

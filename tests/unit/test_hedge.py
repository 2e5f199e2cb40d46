"""Hedged requests: a slow call is asked again of the pool's next deployment, the first
answer wins, the loser stays a cost row at its worst case (no Ray, no network)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest

from pipeline.calls.execute import RowExecutor, RowOutcome
from pipeline.calls.hedge import CANCELLED, HEDGE_STEP, Hedges, first_answer
from pipeline.calls.retry import RetryPolicy
from pipeline.providers.base import ChatRequest, ChatResponse, Usage
from schemas.job import HedgeSpec, parse_spec
from schemas.prices import load_prices
from tests.unit.test_pool import KIND, A, B, Rooms


class Timed:
    """Answers 'billing' after the given seconds per call (a long tail, scripted)."""

    def __init__(self, name: str, delays: Sequence[float]) -> None:
        self.name = name
        self.delays = list(delays)
        self.calls = 0
        self.cancelled = 0

    async def complete(self, session: object, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        delay = self.delays.pop(0) if self.delays else 0.0
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return ChatResponse(text="billing", usage=Usage(100, 2), model=request.model)


def execute(
    a: Timed, b: Timed, hedge: HedgeSpec | None, rows: int
) -> tuple[list[RowOutcome], RowExecutor]:
    async def go() -> tuple[list[RowOutcome], RowExecutor]:
        ex = RowExecutor(
            KIND,
            {"a": a, "b": b},  # type: ignore[dict-item]
            {"flagship": [A, B]},
            session=None,  # type: ignore[arg-type]
            limiter=Rooms(),
            policy=RetryPolicy(max_attempts=2),
            rng=random.Random(0),
            prices=load_prices(),
            strategies={"flagship": "spread"},
            hedge=hedge,
        )
        # The pool's choice, scripted: a first, so a's scripted delays are the row's.
        ex.pool.order = lambda tier, deps, tokens: list(deps)  # type: ignore[method-assign]
        outs = [await ex.run(f"r{i}", "charged twice", "flagship", 50) for i in range(rows)]
        return outs, ex

    return asyncio.run(go())


FAST = [0.0, 0.0, 0.0]  # three quick answers first: the spend a hedge's share is taken of


def test_a_slow_answer_is_hedged_the_first_answer_wins_the_loser_is_a_worst_case_cost() -> None:
    a, b = Timed("a", [*FAST, 30.0]), Timed("b", [])
    outs, ex = execute(a, b, HedgeSpec(after=20, max_extra_pct=100), rows=4)
    slow = outs[3]
    assert slow.ok and slow.provider == "b" and a.cancelled == 1
    cut, won = sorted(slow.calls, key=lambda c: c.provider)
    assert (cut.provider, cut.call_status, cut.token_method) == ("a", CANCELLED, "worst_case")
    assert (won.provider, won.call_status, won.step) == ("b", "ok", HEDGE_STEP)
    assert cut.output_tokens == KIND.max_output_tokens()  # billed at most its answer cap
    assert ex.hedges is not None and (ex.hedges.sent, ex.hedges.won) == (1, 1)
    assert all(len(o.calls) == 1 for o in outs[:3])  # quick answers were never hedged


def test_when_the_first_call_answers_first_the_hedge_is_the_one_cut_off() -> None:
    a, b = Timed("a", [*FAST, 0.2]), Timed("b", [30.0])
    outs, ex = execute(a, b, HedgeSpec(after=20, max_extra_pct=100), rows=4)
    assert outs[3].provider == "a" and b.cancelled == 1
    assert sorted((c.provider, c.call_status, c.step) for c in outs[3].calls) == [
        ("a", "ok", "direct"),
        ("b", CANCELLED, HEDGE_STEP),
    ]
    assert ex.hedges is not None and (ex.hedges.sent, ex.hedges.won) == (1, 0)


def test_no_hedge_past_its_share_of_extra_spend() -> None:
    a, b = Timed("a", [*FAST, 0.2]), Timed("b", [])
    outs, ex = execute(a, b, HedgeSpec(after=20, max_extra_pct=0), rows=4)
    assert outs[3].provider == "a" and b.calls == 0
    assert ex.hedges is not None and ex.hedges.sent == 0


def test_hedge_share_of_spend_bounds_how_many_hedges_go_out() -> None:
    h = Hedges(HedgeSpec(after="p95", max_extra_pct=5))
    assert not h.take(0.001)  # nothing spent yet: no room for extra spend
    h.paid(1.0, hedge=False)
    assert h.take(0.03) and h.take(0.02) and not h.take(0.001)  # 5% of $1
    assert h.sent == 2
    assert h.delay(0.4) == 0.4 and h.delay(None) is None
    assert Hedges(HedgeSpec(after=250)).delay(None) == 0.25


def test_first_answer_cancels_the_loser_and_says_who_won() -> None:
    async def after(s: float, value: str) -> str:
        await asyncio.sleep(s)
        return value

    async def go() -> tuple[list[str | None], int | None]:
        return await first_answer(
            after(10.0, "slow"), 0.01, lambda: after(0.0, "hedge"), lambda r: True
        )

    results, winner = asyncio.run(go())
    assert winner == 1 and results == [None, "hedge"]


def test_no_hedge_when_the_first_answers_in_time() -> None:
    launched: list[bool] = []

    async def go() -> tuple[list[str | None], int | None]:
        async def quick() -> str:
            return "fast"

        def launch() -> None:
            launched.append(True)

        return await first_answer(quick(), 5.0, launch, lambda r: True)

    assert asyncio.run(go()) == (["fast", None], 0) and not launched


def test_hedging_is_off_unless_the_spec_asks_and_after_must_be_positive() -> None:
    doc = {
        "name": "h",
        "task": {"kind": "classify", "labels": ["x", "y"]},
        "input": {"uri": "in", "id_column": "id", "text_columns": ["t"]},
        "output": {"uri": "out"},
        "providers": {"a": {"kind": "sim"}},
        "tiers": {"cheap": ["a/gpt-4o-mini"]},
    }
    assert parse_spec(doc).run.hedge is None
    assert parse_spec({**doc, "run": {"hedge": {}}}).run.hedge == HedgeSpec(after="p95")
    with pytest.raises(ValueError, match=r"run\.hedge\.after"):
        parse_spec({**doc, "run": {"hedge": {"after": 0}}})
